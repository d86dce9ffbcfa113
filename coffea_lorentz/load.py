"""Load: the scores of a finished run, back beside the events they were computed from.

A finished ``coffea-lorentz run`` leaves, per dataset, chunk files
``OUTPUT/<dataset>/<input stem>-<hash>_<start>-<stop>.root`` (one row per input event, in input
order, with ``run``, ``luminosityBlock``, ``event`` and ``FatJet_<tagger>_score``) and
``OUTPUT/manifest.json``, the completion marker that lists them. :func:`load_scores` reads them
back as one awkward array per dataset, or for exactly the events of one coffea chunk, and checks
on the way that every row belongs to the input event it stands beside (``run``,
``luminosityBlock``, ``event`` equal, entry by entry).

Inside a coffea processor::

    scores = load_scores("tagged/", events.metadata["dataset"], events=events)
    events["FatJet", "lloca_score"] = scores.FatJet.lloca_score

For a whole dataset, with the inputs' event identifiers read and compared::

    scores = load_scores("tagged/", "ttbar")        # [events] {run, luminosityBlock, event, FatJet: [FatJet] {lloca_score}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import awkward as ak
import numpy as np

from .errors import InvalidInputError, OutputError

__all__ = ["load_scores", "ID_BRANCHES"]

#: The event identifiers every chunk file holds and :func:`load_scores` compares with the input.
ID_BRANCHES = ("run", "luminosityBlock", "event")


def load_scores(output, dataset: str, *, events: ak.Array | None = None, files: Sequence[str] | None = None,
                check: bool = True, storage_options: Mapping | None = None) -> ak.Array:
    """The branches a finished run wrote for ``dataset``, one row per input event, in input order.

    Args:
        output: the run's output: a local folder, an fsspec URL (``root://…``, ``s3://…``) or an
            :class:`~coffea_lorentz.store.OutputStore`. It must hold ``manifest.json`` (a complete run).
        dataset: the dataset name, as in the fileset.
        events: one coffea chunk (NanoEvents with coffea's ``metadata``: ``filename``,
            ``entrystart``, ``entrystop``), e.g. inside a processor: only its rows are returned, in
            its order, and their identifiers (and the jet counts of each collection both hold) are compared with ``events``'.
            Chunks of any size work; they need not match the run's chunks.
        files: input files in the order wanted (default: the manifest's order, sorted paths); the
            rows of each file follow in entry order.
        check: without ``events``, open each input file and compare its ``run``,
            ``luminosityBlock``, ``event`` with the rows (needs the inputs readable from here).
        storage_options: fsspec options of ``output``.

    Returns:
        an awkward array [events] of records: ``run``, ``luminosityBlock``, ``event``, each
        per-event branch of the chunk files (e.g. ``weight_<name>``) and each collection as a
        jagged record, e.g. ``FatJet`` [FatJet] {``<tagger>_score``, …} (float32; NaN for a jet
        without constituents).

    Raises:
        OutputError: no ``manifest.json`` (the run is not complete), or a chunk file that does not
            match the manifest.
        InvalidInputError: an unknown dataset or file, entries no chunk covers, or rows whose
            identifiers differ from the input's (the message names the chunk file and the entry).
    """
    from .store import OutputStore

    store = output if isinstance(output, OutputStore) else OutputStore(output, **dict(storage_options or {}))
    chunks = _dataset_chunks(_manifest(store), dataset, store.url)
    if events is not None:
        return _load_for_events(store, chunks, events, dataset)
    by_source: dict[str, list[dict]] = {}
    for chunk in chunks:
        by_source.setdefault(chunk["source"], []).append(chunk)
    order = list(by_source) if files is None else [_source_in(by_source, name, dataset) for name in files]
    parts = []
    for source in order:
        pieces = sorted(by_source[source], key=lambda chunk: chunk["entry_start"])
        position = 0
        for chunk in pieces:
            if chunk["entry_start"] != position:
                raise OutputError(f"{store.url}: the manifest lists no chunk for entries [{position}, "
                                  f"{chunk['entry_start']}) of {source}")
            rows, record = _read_chunk(store, chunk)
            if check:
                _compare_ids(rows, _input_ids(source, record.get("treename") or "Events", chunk),
                             f"{chunk['path']} against {source}", chunk["entry_start"])
            parts.append(rows)
            position = chunk["entry_stop"]
    return ak.concatenate(parts) if len(parts) > 1 else parts[0]


# -- the manifest ------------------------------------------------------------------------------
def _manifest(store) -> dict:
    from .run.manifest import MANIFEST_NAME

    if not store.exists(MANIFEST_NAME):
        raise OutputError(f"{store.url}: no {MANIFEST_NAME}, so the run there is not complete "
                          "(rerun the same command to finish it)")
    return json.loads(store.read_text(MANIFEST_NAME))


def _dataset_chunks(manifest: dict, dataset: str, where: str) -> list[dict]:
    chunks = [chunk for chunk in manifest.get("chunks", []) if chunk.get("dataset") == dataset]
    if not chunks:
        known = sorted({chunk.get("dataset") for chunk in manifest.get("chunks", [])})
        raise InvalidInputError(f"{where}: no dataset {dataset!r} in the run (datasets: {', '.join(known) or 'none'})")
    return chunks


def _source_in(sources: Mapping[str, object], name: str, dataset: str) -> str:
    from .run.fileset import normalise_source

    for candidate in (name, normalise_source(name)):
        if candidate in sources:
            return candidate
    raise InvalidInputError(f"{name} is not an input of dataset {dataset!r} in the run "
                            f"(inputs: {', '.join(sorted(sources))})")


# -- chunk files -------------------------------------------------------------------------------
def _read_chunk(store, chunk: dict, entry_start: int | None = None,
                entry_stop: int | None = None) -> tuple[ak.Array, dict]:
    """Rows [entry_start, entry_stop) (input entries) of one chunk file, collections as jagged records,
    and the file's metadata record."""
    import uproot

    from .write import read_chunk_metadata

    with uproot.open(store.url_of(chunk["path"])) as file:
        record = read_chunk_metadata(file)
        expected = {key: chunk[key] for key in ("source", "entry_start", "entry_stop")}
        found = {key: (record or {}).get(key) for key in expected}
        if found != expected:
            raise OutputError(f"{store.url_of(chunk['path'])}: its metadata record says {found}, "
                              f"the manifest {expected}")
        start = 0 if entry_start is None else entry_start - chunk["entry_start"]
        stop = None if entry_stop is None else entry_stop - chunk["entry_start"]
        arrays = file["Events"].arrays(library="ak", entry_start=start, entry_stop=stop)
    return _group_collections(arrays), record


def _group_collections(arrays: ak.Array) -> ak.Array:
    """``nX`` + ``X_y`` branches → a jagged record field ``X`` [X] {y, …}; other branches unchanged."""
    names = list(arrays.fields)
    collections = {name[1:] for name in names if name.startswith("n") and any(
        other.startswith(f"{name[1:]}_") for other in names)}
    fields: dict[str, ak.Array] = {}
    for name in names:
        if name.startswith("n") and name[1:] in collections:
            continue
        prefix = name.split("_", 1)[0]
        if prefix in collections and "_" in name:
            continue
        fields[name] = arrays[name]
    for collection in sorted(collections):
        members = {name.split("_", 1)[1]: arrays[name] for name in names if name.startswith(f"{collection}_")}
        fields[collection] = ak.zip(members)
    return ak.zip(fields, depth_limit=1)


# -- identifiers -------------------------------------------------------------------------------
def _input_ids(source: str, treename: str, chunk: dict) -> dict[str, np.ndarray]:
    import uproot

    try:
        with uproot.open(source) as file:
            tree = file[treename]
            return tree.arrays(list(ID_BRANCHES), entry_start=chunk["entry_start"], entry_stop=chunk["entry_stop"],
                               library="np")
    except OSError as err:
        raise InvalidInputError(f"{source}: cannot read the input to check the event identifiers ({err}); "
                                "pass check=False to skip the check") from err


def _compare_ids(rows: ak.Array, expected: Mapping[str, np.ndarray], what: str, first_entry: int) -> None:
    for name in ID_BRANCHES:
        got = np.asarray(ak.to_numpy(rows[name]))
        want = np.asarray(expected[name])
        if got.shape != want.shape:
            raise InvalidInputError(f"{what}: {len(got)} rows for {len(want)} events")
        differ = np.flatnonzero(got != want)
        if len(differ):
            entry = int(differ[0])
            ids = lambda values: tuple(int(np.asarray(values[n])[entry]) for n in ID_BRANCHES)  # noqa: E731
            raise InvalidInputError(
                f"{what}: entry {first_entry + entry} has (run, luminosityBlock, event) = {ids(rows)} in the "
                f"output but {ids(expected)} in the input; the output does not belong to these events")


def _load_for_events(store, chunks: list[dict], events: ak.Array, dataset: str) -> ak.Array:
    metadata = getattr(events, "metadata", None) or {}
    if "filename" not in metadata:
        raise InvalidInputError("load_scores(events=...): events need coffea's metadata with 'filename' "
                                "(and 'entrystart', 'entrystop'), as a processor receives them")
    by_source: dict[str, list[dict]] = {}
    for chunk in chunks:
        by_source.setdefault(chunk["source"], []).append(chunk)
    source = _source_in(by_source, str(metadata["filename"]), dataset)
    start = int(metadata.get("entrystart") or 0)
    stop = int(metadata.get("entrystop") if metadata.get("entrystop") is not None else start + len(events))
    parts, position = [], start
    for chunk in sorted(by_source[source], key=lambda c: c["entry_start"]):
        if chunk["entry_stop"] <= position or chunk["entry_start"] >= stop:
            continue
        if chunk["entry_start"] > position:
            break
        upto = min(stop, chunk["entry_stop"])
        parts.append(_read_chunk(store, chunk, position, upto)[0])
        position = upto
    if position < stop:
        raise InvalidInputError(f"{source}: entries [{position}, {stop}) are in no chunk of dataset {dataset!r} "
                                f"at {store.url}")
    rows = ak.concatenate(parts) if len(parts) > 1 else parts[0]
    expected = {name: np.asarray(ak.to_numpy(events[name])) for name in ID_BRANCHES}
    _compare_ids(rows, expected, f"{source} entries [{start}, {stop})", start)
    for collection in rows.fields:  # FatJet, or the collection a run scored (--collection Jet)
        if collection not in events.fields or rows[collection].ndim < 2 or events[collection].ndim < 2:
            continue
        got, want = ak.to_numpy(ak.num(rows[collection], axis=1)), ak.to_numpy(ak.num(events[collection], axis=1))
        if not np.array_equal(got, want):
            entry = int(np.flatnonzero(got != want)[0])
            raise InvalidInputError(f"{source}: entry {start + entry} has {int(got[entry])} {collection}s in the "
                                    f"output but {int(want[entry])} in the events")
    return rows
