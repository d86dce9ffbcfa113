"""Filesets of small PFNano files for the run-model tests, and ways to damage files."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_lorentz.testing import write_small_pfnano

#: Events in each file of :func:`make_fileset` (what ``write_small_pfnano`` writes).
EVENTS_PER_FILE = 5


def make_fileset(folder: Path, n_files: int, *, dataset: str = "sample", seed: int = 0) -> dict:
    """``n_files`` small PFNano files (5 events each, different seeds) as a coffea fileset."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(n_files):
        path = write_small_pfnano(folder / f"file{i:02d}.root", seed=seed + i, layout="new" if i % 2 == 0 else "old")
        files[str(path)] = "Events"
    return {dataset: {"files": files}}


def corrupt_baskets(path: Path, branch: str = "PFCands_pt", seed: int = 1) -> None:
    """Overwrite the compressed data of ``branch``'s baskets with random bytes; the file still opens."""
    rng = np.random.default_rng(seed)
    with uproot.open(path) as file:
        tree = file["Events"]
        spans = [(int(tree[branch].member("fBasketSeek")[i]), int(tree[branch].member("fBasketBytes")[i]))
                 for i in range(tree[branch].num_baskets)]
    data = bytearray(path.read_bytes())
    for seek, size in spans:
        start = seek + size // 2  # keep the basket's key header, spoil its payload
        data[start : seek + size] = rng.integers(0, 256, seek + size - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def truncate(path: Path, fraction: float = 0.5) -> None:
    """Cut ``path`` to ``fraction`` of its size (a transfer that stopped half-way)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def read_rows(summary) -> ak.Array:
    """Every verified chunk file of a run, concatenated in dataset / input / entry order."""
    return ak.concatenate([uproot.open(url)["Events"].arrays(library="ak") for url in summary.outputs])


@pytest.fixture
def fileset(tmp_path) -> dict:
    return make_fileset(tmp_path / "inputs", 4)
