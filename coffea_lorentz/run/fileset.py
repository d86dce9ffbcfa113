"""The input side of a run: filesets and what each input file holds.

:func:`load_fileset` turns ROOT files and coffea fileset JSON files into coffea's fileset mapping
``{dataset: {"files": {path_or_url: treename}}}``. :func:`inspect_file` opens one input (on a Dask
worker, so the client needs no access to the inputs) and returns its :class:`InputFile` record:
the number of entries and the file's UUID, or the one-line reason it cannot be used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputFileError, InvalidInputError, MissingBranchError, one_line
from ..read import REQUIRED_BRANCHES
from ..write import check_dataset_name

__all__ = ["InputFile", "load_fileset", "inspect_file", "check_inputs", "normalise_source"]


@dataclass(frozen=True, kw_only=True)
class InputFile:
    """One input file of a dataset, as inspected.

    Attributes:
        dataset: the dataset it is listed under.
        source: its path or URL, as the workers open it.
        treename: the tree holding the events.
        entries: number of events; None when the file cannot be used.
        uuid: the ROOT file's UUID (changes when the file is rewritten); None when unreadable.
        error: one line saying why the file cannot be used; None for a good file.
    """

    dataset: str
    source: str
    treename: str
    entries: int | None = None
    uuid: str | None = None
    error: str | None = None


def normalise_source(source: str | Path) -> str:
    """A local path made absolute (so every worker and every rerun names it alike), as the user wrote
    it otherwise (links are not resolved); URLs unchanged."""
    text = str(source)
    if "://" in text:
        return text
    return os.path.normpath(os.path.abspath(os.path.expanduser(text)))


def load_fileset(inputs: Sequence[str | Path] | dict, *, treename: str = "Events") -> dict[str, dict]:
    """ROOT files and/or coffea fileset JSON files → a coffea fileset ``{dataset: {"files": {path: tree}}}``.

    A ROOT file given directly goes to a dataset named after the file's stem, with tree
    ``treename``; a local folder gives its ``*.root`` files (sorted, not recursive) as one dataset
    named after the folder. Relative paths in a fileset JSON are relative to the JSON file. Local
    paths are made absolute. A folder without ROOT files, a fileset JSON without files and a
    dataset name that is not one plain path segment (``../x``, ``/abs``: each dataset is a folder
    of the output, :func:`~coffea_lorentz.write.check_dataset_name`) are refused by name, before
    any output is touched.
    """
    if isinstance(inputs, dict):
        return {check_dataset_name(str(dataset)): {"files": {normalise_source(f): tree
                                                             for f, tree in _files_of(spec).items()}}
                for dataset, spec in inputs.items()}
    fileset: dict[str, dict] = {}
    for item in inputs:
        text = str(item)
        if text.endswith(".json"):
            path = Path(text)
            if not path.is_file():
                raise InputFileError(str(path), "fileset JSON not found")
            try:
                loaded = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise InputFileError(str(path), f"not valid JSON: {err}") from None
            if not isinstance(loaded, dict) or not any(_files_of(spec) for spec in loaded.values()):
                raise InputFileError(str(path), "the fileset lists no files")
            for dataset, spec in loaded.items():
                resolved = {normalise_source(path.parent / f if not Path(f).is_absolute() and "://" not in f else f): tree
                            for f, tree in _files_of(spec).items()}
                fileset.setdefault(dataset, {"files": {}})["files"].update(resolved)
        elif "://" not in text and Path(text).expanduser().is_dir():
            folder = Path(text).expanduser()
            files = sorted(folder.glob("*.root"))
            if not files:
                raise InputFileError(str(folder), "a folder without .root files")
            name = folder.absolute().name
            fileset.setdefault(name, {"files": {}})["files"].update({normalise_source(f): treename for f in files})
        else:
            stem = text.rstrip("/").rsplit("/", 1)[-1].removesuffix(".root")
            fileset.setdefault(stem, {"files": {}})["files"][normalise_source(text)] = treename
    if not fileset or not any(spec["files"] for spec in fileset.values()):
        raise InvalidInputError("no input files given")
    for dataset in fileset:
        check_dataset_name(dataset)
    return fileset


def _files_of(spec) -> dict[str, str]:
    files = spec.get("files", spec) if isinstance(spec, dict) else spec
    if isinstance(files, list):
        files = {f: "Events" for f in files}
    return {str(f): (tree or "Events") for f, tree in files.items()}


def _missing_branches(present: set[str], collection: str = "FatJet") -> list[str]:
    required = [name.replace("FatJet", collection, 1) if "FatJet" in name else name for name in REQUIRED_BRANCHES]
    missing = [b for b in required if b not in present]
    if f"{collection}_nConstituents" not in present and f"{collection}PFCands_jetIdx" not in present:
        missing.append(f"{collection}_nConstituents or {collection}PFCands_jetIdx")
    return missing


def _open_checked(source: str, treename: str, collection: str = "FatJet"):
    """Open ``source`` and return (entries, uuid); raise InputFileError / MissingBranchError."""
    import difflib

    import uproot

    if "://" not in source and not Path(source).is_file():
        raise InputFileError(source, "no such file")
    try:
        file = uproot.open(source)
    except Exception as err:  # noqa: BLE001 - uproot raises many types for a broken file
        raise InputFileError(source, f"cannot be read as ROOT: {one_line(err)}") from None
    with file:
        if treename not in file:
            keys = file.keys(cycle=False)
            close = difflib.get_close_matches(treename, keys, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f"; keys: {keys}"
            raise InputFileError(source, f"has no tree {treename!r}{hint}")
        size, end = file.file.source.num_bytes, int(file.file.fEND)
        if size is not None and size < end:
            raise InputFileError(source, f"cut short: {size} of the {end} bytes its ROOT header gives (an incomplete "
                                         "copy or transfer); copy the file again, or leave it out with --skipbadfiles")
        tree = file[treename]
        missing = _missing_branches(set(tree.keys()), collection)
        if missing:
            what = "fat-jet" if collection == "FatJet" else collection
            raise MissingBranchError(source, missing, f"{what} constituents need a PFNano file with PF candidates")
        return int(tree.num_entries), str(file.file.uuid)


def inspect_file(dataset: str, source: str, treename: str, collection: str = "FatJet") -> InputFile:
    """Open one input and describe it; never raises for a bad file (the reason goes into ``error``).
    ``collection``: the jets the run scores (their constituent branches must be there)."""
    try:
        entries, uuid = _open_checked(source, treename, collection)
    except (InputFileError, MissingBranchError) as err:
        return InputFile(dataset=dataset, source=source, treename=treename, error=str(err).removeprefix(f"{source}: "))
    except Exception as err:  # noqa: BLE001 - any other failure is this file's, reported in one line
        return InputFile(dataset=dataset, source=source, treename=treename, error=one_line(err))
    return InputFile(dataset=dataset, source=source, treename=treename, entries=entries, uuid=uuid)


def check_inputs(fileset: dict[str, dict], collection: str = "FatJet") -> dict[str, int]:
    """Open every file of ``fileset`` here and check its tree and branches; returns file → number of events.

    Raises :class:`InputFileError` or :class:`MissingBranchError` for the first bad file. (A run
    does not stop at a bad file: it inspects every file on the workers and records the bad ones.)
    """
    entries = {}
    for spec in fileset.values():
        for source, treename in spec["files"].items():
            entries[source], _ = _open_checked(source, treename, collection)
    return entries

