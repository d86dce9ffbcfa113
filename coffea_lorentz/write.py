"""Write: new branches into ROOT files, atomically.

Each processed chunk becomes one ROOT file with an ``Events`` tree holding the event identifiers
(``run``, ``luminosityBlock``, ``event``) and the new branches, one row per input event in input
order, so it joins one-to-one with its input. Jagged per-jet values are written NanoAOD-style:
``FatJet_<name>`` with its counter ``nFatJet``.

Atomicity works at two levels:

- a file is written under a temporary name and renamed into place (:func:`write_events`);
- a run writes every file into a staging folder beside the output folder and moves them into the
  output folder only when the whole run succeeded (:class:`OutputStage`); a failed run removes the
  staging folder, so it leaves no partial output behind.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import awkward as ak
import numpy as np

from .errors import InvalidInputError

__all__ = ["write_events", "write_chunk", "OutputStage", "chunk_file_name"]

_ID_BRANCHES = ("run", "luminosityBlock", "event")
_ID_TYPES = {"run": np.uint32, "luminosityBlock": np.uint32, "event": np.uint64}


def _nanoaod_field_name(outer: str, inner: str) -> str:
    return inner if outer == "" else f"{outer}_{inner}"


def _nanoaod_counter_name(counted: str) -> str:
    return f"n{counted}"


def chunk_file_name(source: str, entry_start: int, entry_stop: int) -> str:
    """Output file name of one chunk: ``<input stem>_<start>-<stop>.root``, zero-padded to sort in order."""
    stem = Path(source).name
    for suffix in (".root", ".ROOT"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return f"{stem}_{entry_start:012d}-{entry_stop:012d}.root"


def write_events(path: str | Path, *, ids: dict[str, np.ndarray], jet_branches: dict[str, ak.Array] | None = None,
                 event_branches: dict[str, np.ndarray] | None = None, collection: str = "FatJet") -> Path:
    """Write one ``Events`` tree to ``path`` atomically.

    Args:
        ids: ``run``, ``luminosityBlock``, ``event``, each [n_events].
        jet_branches: name → jagged [n_events][jets] values; written as ``<collection>_<name>``
            with the counter ``n<collection>``.
        event_branches: name → [n_events] flat values (e.g. per-event weights).
    """
    import uproot

    path = Path(path)
    missing = [name for name in _ID_BRANCHES if name not in ids]
    if missing:
        raise InvalidInputError(f"{path}: event identifiers {missing} are missing")
    n_events = len(ids["event"])
    tree: dict[str, object] = {name: np.asarray(ids[name], dtype=_ID_TYPES[name]) for name in _ID_BRANCHES}
    for name, values in (event_branches or {}).items():
        if len(values) != n_events:
            raise InvalidInputError(f"{path}: branch {name} has {len(values)} rows for {n_events} events")
        tree[name] = np.asarray(values)
    if jet_branches:
        lengths = {name: len(values) for name, values in jet_branches.items()}
        if any(n != n_events for n in lengths.values()):
            raise InvalidInputError(f"{path}: per-jet branches have rows {lengths} for {n_events} events")
        tree[collection] = ak.zip(dict(jet_branches))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with uproot.recreate(tmp) as file:
            branch_types = {name: values.type if isinstance(values, ak.Array) else values.dtype
                            for name, values in tree.items()}
            events = file.mktree("Events", branch_types, field_name=_nanoaod_field_name, counter_name=_nanoaod_counter_name)
            events.extend(tree)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_chunk(events: ak.Array, output_dir: str | Path, *, jet_branches: dict[str, ak.Array],
                event_branches: dict[str, np.ndarray] | None = None) -> str:
    """Write one coffea chunk's new branches beside its event identifiers.

    The file goes to ``output_dir/<dataset>/<input stem>_<start>-<stop>.root``, named from
    ``events.metadata`` (``dataset``, ``filename``, ``entrystart``, ``entrystop``) so that chunk
    files sort in input order. Returns the path relative to ``output_dir``.
    """
    metadata = events.metadata
    source = metadata.get("filename", "<events>")
    entry_start = int(metadata.get("entrystart", 0))
    entry_stop = int(metadata.get("entrystop", entry_start + len(events)))
    folder = Path(output_dir) / str(metadata.get("dataset", "events"))
    folder.mkdir(parents=True, exist_ok=True)
    ids = {name: np.asarray(ak.to_numpy(events[name])) for name in _ID_BRANCHES}
    path = write_events(folder / chunk_file_name(source, entry_start, entry_stop), ids=ids,
                        jet_branches=jet_branches, event_branches=event_branches)
    return f"{folder.name}/{path.name}"


class OutputStage:
    """A staging folder whose files appear in ``output_dir`` only if the run succeeds.

    >>> with OutputStage("out") as stage:        # doctest: +SKIP
    ...     write_events(stage.path / "a.root", ...)
    ... # on success: out/a.root; on an exception: nothing, and the staging folder is gone
    """

    def __init__(self, output_dir: str | Path):
        self.output_dir = Path(output_dir).resolve()
        self.path = self.output_dir.parent / f".{self.output_dir.name}.staging-{uuid.uuid4().hex[:8]}"
        self.committed: list[Path] = []

    def __enter__(self) -> "OutputStage":
        self.path.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def commit(self) -> list[Path]:
        """Move every staged file into ``output_dir``, keeping sub-folders; returns their paths."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        moved = []
        for staged in sorted(self.path.rglob("*.root")):
            target = self.output_dir / staged.relative_to(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
            moved.append(target)
        shutil.rmtree(self.path, ignore_errors=True)
        self.committed = moved
        return moved

    def abort(self) -> None:
        """Remove the staging folder and everything in it."""
        shutil.rmtree(self.path, ignore_errors=True)
