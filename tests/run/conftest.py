"""Filesets of small PFNano files for the run-model tests."""

from __future__ import annotations

import awkward as ak
import pytest
import uproot

from coffea_lorentz.run import RunConfig
from coffea_lorentz.testing import corrupt_baskets, truncate_file, write_pfnano_fileset

#: Events in each file of :func:`make_fileset` (what ``write_small_pfnano`` writes).
EVENTS_PER_FILE = 5

#: The tagger of the run-model tests (small, in-process) and its branch.
TAGGER = "lorentznet"
SCORE = f"FatJet_{TAGGER}_score"

make_fileset = write_pfnano_fileset
truncate = truncate_file

__all__ = ["EVENTS_PER_FILE", "TAGGER", "SCORE", "make_fileset", "truncate", "corrupt_baskets", "read_rows", "config"]


def config(**changes) -> RunConfig:
    """The run-model tests' run: :data:`TAGGER` in-process, in this process, 3 events a chunk, no progress bar."""
    options = dict(taggers=(TAGGER,), backend="torch", n_workers=0, chunksize=3, progress=False)
    options.update(changes)
    return RunConfig(**options)


def read_rows(summary) -> ak.Array:
    """Every verified chunk file of a run, concatenated in dataset / input / entry order."""
    return ak.concatenate([uproot.open(url)["Events"].arrays(library="ak") for url in summary.outputs])


@pytest.fixture
def fileset(tmp_path) -> dict:
    return make_fileset(tmp_path / "inputs", 4)
