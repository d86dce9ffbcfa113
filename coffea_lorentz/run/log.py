"""The run's log in ``<output>/_logs/``: what it says, and where it goes when the output cannot take it.

A run always leaves a log — also when it is interrupted (:func:`log_interruption`), and in this
machine's temporary folder when the output is full (:func:`write_log`): the settings, the chunk
counts, retries, the server's statistics, stale files set aside, unusable inputs, non-finite
values, what could not be written, and every failed chunk with its traceback.
"""

from __future__ import annotations

import time
from pathlib import Path

from .. import __version__
from ..chunk import RunSettings
from ..store import OutputStore
from .stale import STALE_FOLDER
from .summary import RunSummary

__all__ = ["log_text", "log_interruption", "write_log", "unless_unwritable"]


def log_text(summary: RunSummary, settings: RunSettings) -> str:
    lines = [f"coffea-lorentz {__version__} run into {summary.output}",
             f"settings: {settings.to_json()}",
             f"chunks: {summary.processed} processed, {summary.skipped} skipped (done earlier), "
             f"{len(summary.failed)} failed; files unusable: {len(summary.bad_files)}",
             f"retries: {summary.retries_line}"]
    lines.extend(f"SERVER {line}" for line in summary.server)
    lines.extend(f"STALE {name} moved to {STALE_FOLDER}/{name} (not in this run's plan)" for name in summary.stale_files)
    for info in summary.bad_files:
        lines.append(f"UNUSABLE FILE {info.source} (dataset {info.dataset}): {info.error}")
    first_entries: dict[str, set[int]] = {}  # one pass over the records, not one per affected input
    for record in summary.records:
        if record.nonfinite_entries:
            first_entries.setdefault(record.chunk.source, set()).update(record.nonfinite_entries)
    for source, count in summary.nonfinite_jets.items():
        entries = sorted(first_entries.get(source, ()))[:5]
        lines.append(f"NON-FINITE {source}: {count} jets had constituents with non-finite four-momenta (dropped); "
                     f"first entries {entries}")
    lines.extend(f"OUTSIDE TRAINING DOMAIN {line}" for line in summary.outside_domain)
    lines.extend(f"WEIGHTS {line}" for line in summary.weights)
    if summary.figures_note:
        lines.append(f"PARTIAL FIGURES {summary.figures_note}")
    lines.extend(f"NOT WRITTEN {line}" for line in summary.not_written)
    for record in summary.failed:
        lines.append(f"FAILED {record.chunk.where} (dataset {record.chunk.dataset}): {record.reason}")
        if record.detail:
            lines.append(record.detail.rstrip())
    return "\n".join(lines) + "\n"


def log_interruption(store: OutputStore, log_name: str, summary: RunSummary, settings: RunSettings,
                      interrupted: KeyboardInterrupt, *, planned: int, started: float) -> None:
    """Write the log of a run interrupted during its chunks, and hang on ``interrupted`` what the
    command line says about it: ``chunks_done`` (verified now or earlier), ``chunks_planned``, ``log``."""
    summary.wall_s = time.perf_counter() - started
    done = summary.processed + summary.skipped
    text = log_text(summary, settings) + (f"INTERRUPTED ({type(interrupted).__name__}) after {done} of {planned} "
                                           "chunks; rerun the same command to resume\n")
    write_log(store, log_name, text, summary)
    interrupted.chunks_done, interrupted.chunks_planned, interrupted.log = done, planned, summary.log


# -- the run ---------------------------------------------------------------------------------


def unless_unwritable(summary: RunSummary, what: str, write) -> bool:
    """Call ``write()``; an output that cannot take it (disk full, …) is listed in ``summary.not_written``
    instead of ending the run. Returns whether it was written."""
    try:
        write()
    except OSError as err:
        summary.not_written.append(f"{what}: {' '.join(str(err).split())}")
        return False
    return True


def write_log(store: OutputStore, log_name: str, text: str, summary: RunSummary) -> None:
    """Write the run's log to ``log_name`` in the output, else (disk full, …) to this machine's
    temporary folder; ``summary.log`` says where it is."""
    if unless_unwritable(summary, "log", lambda: store.write_text(log_name, text)):
        summary.log = store.url_of(log_name)
        return
    import tempfile

    fallback = Path(tempfile.gettempdir()) / "coffea-lorentz-logs" / Path(log_name).name
    try:
        fallback.parent.mkdir(parents=True, exist_ok=True)
        fallback.write_text(text + "".join(f"NOT WRITTEN {line}\n" for line in summary.not_written))
    except OSError:
        return
    summary.not_written[-1] += f" (written to {fallback} instead)"
    summary.log = str(fallback)
