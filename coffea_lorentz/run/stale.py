"""Stale chunk files: what a run's folder holds that the current fileset no longer plans.

A run owns its output folder. When an input shrinks (400 → 350 entries), is rewritten with other
entry boundaries, or leaves the fileset (with its dataset or alone), its earlier chunk files are no
longer part of the plan, yet a glob over ``<output>/<dataset>/*.root`` would read them beside the new
ones: duplicated events with stale scores, and events that no longer exist. :func:`set_aside_stale`
moves every such file to ``<output>/_stale/<dataset>/`` (never deleting finished work, never
touching anything outside the output), so the dataset folders hold exactly the current plan.

Kept in place: the files of every chunk of the full plan (also those beyond ``--maxchunks``), and
every chunk file of an input that is in the fileset but could not be inspected this time (an
unreachable server must not cost its finished chunks). Only files whose names match
:data:`~coffea_lorentz.write.CHUNK_FILE_PATTERN`, one level below the output, are considered.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from ..store import OutputStore
from ..write import CHUNK_FILE_PATTERN, RESERVED_FOLDERS, chunk_file_prefix
from .chunks import Chunk
from .fileset import InputFile

__all__ = ["STALE_FOLDER", "stale_chunk_files", "set_aside_stale"]

#: Folder of the output that stale chunk files are moved to.
STALE_FOLDER = "_stale"


def stale_chunk_files(listing: Iterable[str], plan: Iterable[Chunk], uninspected: Iterable[InputFile]) -> list[str]:
    """The chunk files of ``listing`` (paths relative to the output) that are not in ``plan``.

    Args:
        listing: every file of the output, relative to it.
        plan: every chunk of the current fileset (before any ``--maxchunks`` cut).
        uninspected: inputs of the fileset that could not be inspected; their chunk files are kept.
    """
    planned = {chunk.path for chunk in plan}
    kept_prefixes = {(info.dataset, chunk_file_prefix(info.source)) for info in uninspected}
    stale = []
    for name in listing:
        folder, _, base = name.partition("/")
        if not base or "/" in base or folder in RESERVED_FOLDERS or name in planned:
            continue
        match = CHUNK_FILE_PATTERN.match(base)
        if match is None or (folder, match.group("prefix")) in kept_prefixes:
            continue
        stale.append(name)
    return sorted(stale)


def set_aside_stale(store: OutputStore, plan: Iterable[Chunk], files: Iterable[InputFile]) -> list[str]:
    """Move the stale chunk files of ``store`` to ``_stale/<dataset>/``; returns their former paths.

    ``files`` are the fileset's inputs as inspected (those with an ``error`` keep their chunk files).
    """
    uninspected = [info for info in files if info.error is not None]
    stale = stale_chunk_files(store.list_files(), plan, uninspected)
    for name in stale:
        store.move(name, posixpath.join(STALE_FOLDER, name))
    return stale
