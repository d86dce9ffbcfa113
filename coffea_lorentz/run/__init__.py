"""The run model: a fileset → verified chunk files at a local or remote destination, over Dask.

- :mod:`~coffea_lorentz.run.fileset` — filesets and inspecting input files (entries, UUID, branches).
- :mod:`~coffea_lorentz.run.chunks` — the chunk (unit of work), the settings every chunk file
  records, the per-chunk record, and the check that a chunk is done.
- :mod:`~coffea_lorentz.run.stale` — chunk files the current plan does not hold, moved to ``_stale/``.
- :mod:`~coffea_lorentz.run.task` — the task a worker runs for a chunk (skip if done, else read,
  score, write; failures recorded, never raised).
- :mod:`~coffea_lorentz.run.executors` — Dask (scheduler or LocalCluster) or in-process.
- :mod:`~coffea_lorentz.run.worker_logging` — what the run's own LocalCluster workers keep off its console.
- :mod:`~coffea_lorentz.run.preflight` — checks before any chunk: taggers, served models and their hashes.
- :mod:`~coffea_lorentz.run.local_server` — the given server, or a local one bound where workers reach it.
- :mod:`~coffea_lorentz.run.lock` — one run at a time per output folder.
- :mod:`~coffea_lorentz.run.histograms` — per-dataset score histograms, plots and table.
- :mod:`~coffea_lorentz.run.manifest` — ``manifest.json``, the completion marker.
- :mod:`~coffea_lorentz.run.runner` — :func:`run_tagging`, which ties them together.
"""

from .chunks import Chunk, ChunkRecord, RunSettings
from .fileset import InputFile, check_inputs, load_fileset
from .runner import EXIT_FAILURES, RunConfig, RunSummary, default_max_constituents, run_tagging

__all__ = [
    "Chunk",
    "ChunkRecord",
    "EXIT_FAILURES",
    "InputFile",
    "RunConfig",
    "RunSettings",
    "RunSummary",
    "check_inputs",
    "default_max_constituents",
    "load_fileset",
    "run_tagging",
]
