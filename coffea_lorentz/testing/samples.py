"""Small PFNano files made on the spot, and ways to damage files, for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path


__all__ = ["write_small_pfnano", "write_nanoaod_tree", "write_pfnano_fileset", "corrupt_baskets", "truncate_file"]


def write_small_pfnano(path: Path, *, seed: int = 7, layout: str = "new") -> Path:
    """Write a small PFNano-layout file with the awkward cases batching must survive.

    Five events: one with no FatJet, one jet with no constituents, one jet with 150 constituents
    (more than the default 128 kept), and jets of mixed lengths. ``layout="new"`` writes
    ``FatJet_nConstituents`` and stores constituents jet after jet; ``layout="old"`` writes only
    ``FatJetPFCands_jetIdx`` with the constituents of different jets interleaved.
    """
    import awkward as ak
    import numpy as np

    rng = np.random.default_rng(seed)
    constituents_per_jet = [[12, 40], [], [0, 5], [150], [3, 70, 1]]
    run, lumi, event = [], [], []
    fatjet, pfcands, links = [], [], []
    for i, jets in enumerate(constituents_per_jet):
        n_pf = sum(jets) + 10
        pf = {
            "pt": rng.exponential(20.0, n_pf).astype(np.float32) + 0.5,
            "eta": rng.normal(0.0, 1.0, n_pf).astype(np.float32),
            "phi": rng.uniform(-np.pi, np.pi, n_pf).astype(np.float32),
            "mass": np.where(rng.random(n_pf) < 0.6, 0.1396, 0.0).astype(np.float32),
            "pdgId": np.where(rng.random(n_pf) < 0.6, 211, 22).astype(np.int32),
            "charge": np.where(rng.random(n_pf) < 0.6, 1, 0).astype(np.int32),
        }
        pf_index = rng.permutation(n_pf)[: sum(jets)].astype(np.int32)
        jet_index = np.repeat(np.arange(len(jets), dtype=np.int32), jets)
        if layout == "old":
            order = np.random.default_rng(seed + 1000 + i).permutation(len(jet_index))
            pf_index, jet_index = pf_index[order], jet_index[order]
        fatjet.append({
            "pt": (np.sort(rng.uniform(200, 900, len(jets)))[::-1]).astype(np.float32),
            "eta": rng.normal(0, 1, len(jets)).astype(np.float32),
            "phi": rng.uniform(-np.pi, np.pi, len(jets)).astype(np.float32),
            "mass": rng.uniform(10, 200, len(jets)).astype(np.float32),
            "nConstituents": np.asarray(jets, dtype=np.uint8 if max(jets, default=0) < 256 else np.int32),
        })
        pfcands.append(pf)
        links.append({"jetIdx": jet_index, "pFCandsIdx": pf_index})
        run.append(1)
        lumi.append(100 + i)
        event.append(5000 + 17 * i)

    def jagged(records: list[dict], field: str):
        return ak.Array([r[field] for r in records])

    fatjet_fields = ["pt", "eta", "phi", "mass"] + (["nConstituents"] if layout == "new" else [])
    link_fields = ["pFCandsIdx"] + (["jetIdx"] if layout == "old" else [])
    tree = {
        "run": np.asarray(run, dtype=np.uint32),
        "luminosityBlock": np.asarray(lumi, dtype=np.uint32),
        "event": np.asarray(event, dtype=np.uint64),
        "FatJet": ak.zip({f: jagged(fatjet, f) for f in fatjet_fields}),
        "PFCands": ak.zip({f: jagged(pfcands, f) for f in pfcands[0]}),
        "FatJetPFCands": ak.zip({f: jagged(links, f) for f in link_fields}),
    }
    return write_nanoaod_tree(path, tree)


def write_nanoaod_tree(path: Path, tree: dict) -> Path:
    """Write an ``Events`` tree with NanoAOD names: a record array ``tree["FatJet"]`` becomes
    ``FatJet_<field>`` branches with the counter ``nFatJet``; flat arrays keep their names."""
    import awkward as ak
    import uproot

    with uproot.recreate(path) as file:
        events = file.mktree(
            "Events",
            {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in tree.items()},
            field_name=lambda outer, inner: inner if outer == "" else f"{outer}_{inner}",
            counter_name=lambda counted: f"n{counted}",
        )
        events.extend(tree)
    return path


def write_pfnano_fileset(folder: Path, n_files: int, *, dataset: str = "sample", seed: int = 0) -> dict:
    """``n_files`` small PFNano files (5 events each, seeds ``seed + i``, both layouts alternating)
    in ``folder``, as a coffea fileset ``{dataset: {"files": {path: "Events"}}}``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(n_files):
        path = write_small_pfnano(folder / f"file{i:02d}.root", seed=seed + i, layout="new" if i % 2 == 0 else "old")
        files[str(path)] = "Events"
    return {dataset: {"files": files}}


def corrupt_baskets(path: Path, branch: str = "PFCands_pt", seed: int = 1) -> None:
    """Overwrite the second half of every compressed basket of ``branch`` with random bytes.

    The file still opens and lists its entries (its header, keys and tree metadata are intact);
    reading ``branch`` fails with a decompression error — the kind of damage an up-front check misses.
    """
    import numpy as np
    import uproot

    rng = np.random.default_rng(seed)
    with uproot.open(path) as file:
        branch_object = file["Events"][branch]
        spans = [(int(branch_object.member("fBasketSeek")[i]), int(branch_object.member("fBasketBytes")[i]))
                 for i in range(branch_object.num_baskets)]
    data = bytearray(Path(path).read_bytes())
    for seek, size in spans:
        start = seek + size // 2
        data[start : seek + size] = rng.integers(0, 256, seek + size - start, dtype=np.uint8).tobytes()
    Path(path).write_bytes(bytes(data))


def truncate_file(path: Path, fraction: float = 0.5) -> None:
    """Cut ``path`` to ``fraction`` of its size, like a transfer that stopped half-way."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * fraction)])
