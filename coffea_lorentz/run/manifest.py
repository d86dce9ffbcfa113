"""The completion marker: ``manifest.json`` at the top of a finished output folder.

Written by the client only when every chunk of the fileset is done and its file verified (rows
from the file header, metadata record), like Spark's ``_SUCCESS``: a downstream user or workflow
checks that it exists, and reads from it every chunk file with its rows, input file and entry
range, the SHA-256 and size of its bytes, the taggers, the models' SHA-256, the software versions and the wall time;
per dataset its events, chunks, input files and figures: jets with non-finite inputs, and per
reweighter the sums of its weights (Σw, Σw², events, clipped) and the jets outside its training domain.
"""

from __future__ import annotations

import datetime
import json
import platform
from importlib import metadata as importlib_metadata

from ..reweight.diagnostics import weight_totals
from ..reweight.domain import outside_by_dataset
from .chunks import ChunkRecord, RunSettings

__all__ = ["MANIFEST_NAME", "RUN_RECORD_NAME", "build_manifest", "software_versions"]

MANIFEST_NAME = "manifest.json"
#: The settings of the run that owns an output folder, written when the folder is first claimed.
RUN_RECORD_NAME = "run.json"
MANIFEST_FORMAT = 1
_PACKAGES = ("coffea-lorentz", "coffea", "awkward", "uproot", "dask", "distributed", "torch", "numpy",
             "tritonclient", "fsspec")


def software_versions() -> dict[str, str]:
    """Versions of Python and of the packages a run depends on."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def build_manifest(*, output: str, settings: RunSettings, records: list[ChunkRecord], wall_s: float,
                   skipped_files: dict[str, str] | None = None) -> dict:
    """The manifest of a complete run (``records`` all done or skipped, every file verified);
    ``skipped_files`` are unusable inputs left out on request (path → reason)."""
    chunks = sorted(records, key=lambda r: (r.chunk.dataset, r.chunk.source, r.chunk.entry_start))
    datasets: dict[str, dict] = {}
    for record in chunks:
        # "files" is a dict (ordered, O(1) membership) until the end: a list scanned per chunk is O(chunks × files)
        entry = datasets.setdefault(record.chunk.dataset, {"events": 0, "chunks": 0, "files": {}, "nonfinite_jets": 0,
                                                           "weights": {}, "outside_domain": {}, "figures_complete": True})
        entry["events"] += record.rows
        entry["chunks"] += 1
        entry["files"].setdefault(record.chunk.source, None)
        entry["nonfinite_jets"] += record.nonfinite_jets
        entry["figures_complete"] = entry["figures_complete"] and record.figures_stored
    for entry in datasets.values():
        entry["files"] = list(entry["files"])
    # The run's own sums (what its weight and training-domain lines print), per dataset and reweighter.
    for (dataset, name), total in weight_totals((r.chunk.dataset, r.weights) for r in chunks).items():
        datasets[dataset]["weights"][name] = total
    for (dataset, name), total in outside_by_dataset((r.chunk.dataset, r.outside_domain) for r in chunks).items():
        datasets[dataset]["outside_domain"][name] = total
    return {
        "format": MANIFEST_FORMAT,
        "complete": True,
        "output": output,
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(wall_s, 3),
        "events": sum(record.rows for record in chunks),
        "settings": settings.to_json(),
        "software": software_versions(),
        "datasets": datasets,
        "skipped_files": dict(skipped_files or {}),
        "chunks": [
            {"path": record.chunk.path, "rows": record.rows, "dataset": record.chunk.dataset,
             "source": record.chunk.source, "entry_start": record.chunk.entry_start,
             "entry_stop": record.chunk.entry_stop, "file_uuid": record.chunk.file_uuid,
             "sha256": record.sha256, "bytes": record.n_bytes}
            for record in chunks
        ],
    }


def dumps(record: dict) -> str:
    return json.dumps(record, indent=1, sort_keys=False) + "\n"
