"""Write: new branches into ROOT files, atomically, local or remote.

Each processed chunk becomes one ROOT file with an ``Events`` tree holding the event identifiers
(``run``, ``luminosityBlock``, ``event``) and the new branches, one row per input event in input
order, so it joins one-to-one with its input. Jagged per-jet values are written NanoAOD-style:
``FatJet_<name>`` with its counter ``nFatJet``. Beside the tree, a ``TObjString`` named
:data:`METADATA_KEY` holds a JSON record describing the chunk (its input file and entry range, the
taggers and the run settings), so a chunk file says on its own what it is; a chunk file's record
also holds the SHA-256 of every value of its tree as read back (:func:`content_sha256`), so a file
cut short or damaged after it was written is told apart from a whole one.

A file is written under a temporary name and renamed into place (:func:`write_events`);
:func:`write_chunk` writes it on local scratch space and puts it to the output store
(:class:`~coffea_lorentz.store.OutputStore`) in one atomic step, so the destination never holds a
half-written chunk file.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import tempfile
import uuid
from pathlib import Path

import awkward as ak
import numpy as np

from .errors import InvalidInputError

__all__ = ["write_events", "write_chunk", "chunk_file_name", "chunk_file_prefix", "chunk_path", "check_dataset_name",
           "read_chunk_metadata", "content_sha256", "METADATA_KEY", "CONTENT_KEY", "CHUNK_FILE_PATTERN",
           "RESERVED_FOLDERS"]

#: Key of the JSON metadata record inside every chunk file.
METADATA_KEY = "coffea_lorentz"
#: Key, in a chunk file's metadata record, of the :func:`content_sha256` of its ``Events`` tree.
CONTENT_KEY = "content_sha256"

_ID_BRANCHES = ("run", "luminosityBlock", "event")
_ID_TYPES = {"run": np.uint32, "luminosityBlock": np.uint32, "event": np.uint64}


def _nanoaod_field_name(outer: str, inner: str) -> str:
    return inner if outer == "" else f"{outer}_{inner}"


def _nanoaod_counter_name(counted: str) -> str:
    return f"n{counted}"


#: What every chunk file's name looks like (:func:`chunk_file_name`); a run treats the files of its
#: dataset folders that match it as its own.
CHUNK_FILE_PATTERN = re.compile(r"^(?P<prefix>.+-[0-9a-f]{8}_)(?P<start>[0-9]{12})-(?P<stop>[0-9]{12})\.root$")
#: Folders of an output that a run keeps for itself; no dataset may be named like them.
RESERVED_FOLDERS = ("_logs", "_stale")


def check_dataset_name(dataset: str) -> str:
    """``dataset`` if it is one safe path segment, else raise :class:`~coffea_lorentz.errors.InvalidInputError`.

    A dataset is a folder of the output: its name must not leave the output (``..``, ``/``, an
    absolute path), hide (``.``), be empty or take one of :data:`RESERVED_FOLDERS`.
    """
    if (not dataset or dataset in (".", "..") or any(c in dataset for c in "/\\\0")
            or dataset != dataset.strip() or dataset.startswith(".") or dataset in RESERVED_FOLDERS):
        raise InvalidInputError(
            f"dataset name {dataset!r}: a dataset is a folder of the output, so its name must be one plain path segment "
            f"(no '/', '\\', leading '.', not {' or '.join(RESERVED_FOLDERS)}); rename it in the fileset")
    return dataset


def chunk_file_prefix(source: str) -> str:
    """The start of the name of every chunk file of the input ``source``: ``<input stem>-<source hash>_``."""
    stem = posixpath.basename(source.rstrip("/"))
    for suffix in (".root", ".ROOT"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    digest = hashlib.sha1(source.encode()).hexdigest()[:8]
    return f"{stem}-{digest}_"


def chunk_file_name(source: str, entry_start: int, entry_stop: int) -> str:
    """Output file name of one chunk: ``<input stem>-<source hash>_<start>-<stop>.root``.

    The same input file and entry range always give the same name; the 8 hex digits of the
    SHA-1 of ``source`` (the input's path or URL as listed in the fileset) keep inputs with the
    same file name in different folders apart, and the zero-padded range sorts chunks in input order.
    """
    return f"{chunk_file_prefix(source)}{entry_start:012d}-{entry_stop:012d}.root"


def content_sha256(tree) -> str:
    """SHA-256 of every value of an ``uproot`` TTree, read back: proof that every basket of the file
    is there and decompresses to what was written.

    Branches in name order; each contributes its name, its awkward form and its packed buffers
    (offsets, then values), so a jagged branch's counts count as much as its values.
    """
    digest = hashlib.sha256()
    for name in sorted(tree.keys()):
        values = ak.to_packed(tree[name].array(library="ak"))
        form, length, buffers = ak.to_buffers(values)
        digest.update(f"{name}\0{form.to_json()}\0{length}\0".encode())
        for key in sorted(buffers):
            digest.update(key.encode() + b"\0")
            digest.update(np.ascontiguousarray(buffers[key]).tobytes())
    return digest.hexdigest()


def write_events(path: str | Path, *, ids: dict[str, np.ndarray], jet_branches: dict[str, ak.Array] | None = None,
                 event_branches: dict[str, np.ndarray] | None = None, collection: str = "FatJet",
                 metadata: dict | None = None, collections: dict[str, dict[str, ak.Array]] | None = None,
                 checksum: bool = False) -> Path:
    """Write one ``Events`` tree to ``path`` atomically.

    Args:
        ids: ``run``, ``luminosityBlock``, ``event``, each [n_events].
        jet_branches: name → jagged [n_events][jets] values; written as ``<collection>_<name>``
            with the counter ``n<collection>``.
        event_branches: name → [n_events] flat values (e.g. per-event weights).
        metadata: a JSON-serialisable record stored as the ``TObjString`` :data:`METADATA_KEY`.
        collections: other jagged collections, name → field → [n_events][items], written as
            ``<name>_<field>`` with the counter ``n<name>`` (e.g. input branches copied along).
        checksum: add :data:`CONTENT_KEY` to ``metadata``: the :func:`content_sha256` of the tree as
            written, read back from the file before it is renamed into place.
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
    for name, fields in (collections or {}).items():
        lengths = {field: len(values) for field, values in fields.items()}
        if any(n != n_events for n in lengths.values()):
            raise InvalidInputError(f"{path}: collection {name} has rows {lengths} for {n_events} events")
        tree[name] = ak.zip(dict(fields))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with uproot.recreate(tmp) as file:
            branch_types = {name: values.type if isinstance(values, ak.Array) else values.dtype
                            for name, values in tree.items()}
            events = file.mktree("Events", branch_types, field_name=_nanoaod_field_name, counter_name=_nanoaod_counter_name)
            events.extend(tree)
            if metadata is not None and not checksum:
                file[METADATA_KEY] = json.dumps(metadata, sort_keys=True)
        if metadata is not None and checksum:
            with uproot.open(tmp) as written:
                record = {**metadata, CONTENT_KEY: content_sha256(written["Events"])}
            with uproot.update(tmp) as file:
                file[METADATA_KEY] = json.dumps(record, sort_keys=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_chunk(events: ak.Array, output, *, jet_branches: dict[str, ak.Array],
                event_branches: dict[str, np.ndarray] | None = None, metadata: dict | None = None,
                copy_branches: tuple[str, ...] = (), collection: str = "FatJet") -> str:
    """Write one coffea chunk's new branches beside its event identifiers to ``output``.

    ``output`` is an :class:`~coffea_lorentz.store.OutputStore`, a local folder or an fsspec URL.
    The file goes to ``<dataset>/<chunk_file_name(...)>``, named from ``events.metadata``
    (``dataset``, ``filename``, ``entrystart``, ``entrystop``) so that the same chunk always gets the
    same name and chunk files sort in input order. ``metadata`` is stored in the file (see
    :func:`write_events`). Input branches matching the globs ``copy_branches`` (``"FatJet_*"``) are
    copied along (:func:`read_input_branches`), so the file is a self-contained NanoAOD-style file
    with the new branches next to, say, the jet kinematics. ``jet_branches`` are written as
    ``<collection>_<name>`` with the counter ``n<collection>``. Returns the path relative to ``output``.
    """
    from .store import OutputStore

    store = output if isinstance(output, OutputStore) else OutputStore(output)
    info = events.metadata
    source = info.get("filename", "<events>")
    entry_start = int(info.get("entrystart", 0))
    entry_stop = int(info.get("entrystop", entry_start + len(events)))
    relative = chunk_path(str(info.get("dataset", "events")), source, entry_start, entry_stop)
    ids = {name: np.asarray(ak.to_numpy(events[name])) for name in _ID_BRANCHES}
    collections: dict = {}
    if copy_branches:
        own, collections, flat = read_input_branches(source, str(info.get("treename", "Events")), entry_start,
                                                     entry_stop, tuple(copy_branches), collection=collection)
        jet_branches = {**{k: v for k, v in own.items() if k not in jet_branches}, **jet_branches}
        event_branches = {**flat, **(event_branches or {})}
    with tempfile.TemporaryDirectory(prefix="coffea-lorentz-chunk-") as scratch:
        local = write_events(Path(scratch) / "chunk.root", ids=ids, jet_branches=jet_branches,
                             event_branches=event_branches, metadata=metadata, collections=collections,
                             collection=collection, checksum=metadata is not None)
        store.put_file(local, relative)
    return relative


def read_input_branches(source: str, treename: str, entry_start: int, entry_stop: int, patterns: tuple[str, ...],
                        *, collection: str = "FatJet") -> tuple[dict, dict, dict]:
    """Input branches matching the glob ``patterns`` (e.g. ``FatJet_*``) over one entry range, grouped
    for :func:`write_events`: ``(fields of collection, other collections, flat branches)``.

    A branch ``X_y`` is a field ``y`` of collection ``X`` when the tree has the counter ``nX``;
    counters and the event identifiers are written anyway and are not copied.
    """
    import uproot

    with uproot.open(source) as file:
        tree = file[treename]
        present = set(tree.keys())
        names = [name for name in tree.keys(filter_name=list(patterns))
                 if name not in _ID_BRANCHES and not (name.startswith("n") and name[1:] and any(
                     key.startswith(f"{name[1:]}_") for key in present))]
        arrays = tree.arrays(names, entry_start=entry_start, entry_stop=entry_stop, library="ak") if names else {}
    own, others, flat = {}, {}, {}
    for name in names:
        prefix, _, field = name.partition("_")
        if field and f"n{prefix}" in present:
            (own if prefix == collection else others.setdefault(prefix, {}))[field] = arrays[name]
        else:
            flat[name] = ak.to_numpy(arrays[name])
    return own, others, flat


def chunk_path(dataset: str, source: str, entry_start: int, entry_stop: int) -> str:
    """Path of one chunk's file relative to the output: ``<dataset>/<chunk_file_name(...)>``; a dataset
    name that is not one safe path segment is refused (:func:`check_dataset_name`)."""
    return f"{check_dataset_name(dataset)}/{chunk_file_name(source, entry_start, entry_stop)}"


def read_chunk_metadata(file) -> dict | None:
    """The metadata record of an open chunk file (an ``uproot`` directory), None if it has none."""
    if METADATA_KEY not in file:
        return None
    return json.loads(str(file[METADATA_KEY]))
