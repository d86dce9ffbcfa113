"""Test helpers: a pytest fixture factory for a real local Triton server, and small PFNano files.

In a ``conftest.py``::

    from coffea_lorentz.testing import triton_server_fixture

    triton_server = triton_server_fixture(taggers=("identity",), scope="session")

    @pytest.mark.slow
    def test_something(triton_server):
        client = tritonclient.grpc.InferenceServerClient(triton_server.grpc_url)

The fixture builds a model repository in a pytest temporary directory, starts the server on free
ports, yields the running :class:`~coffea_lorentz.serve.TritonServer` (``.grpc_url``,
``.http_url``, ``.config.repository``) and stops it afterwards. When the server environment is not
set up, tests using it are skipped with the reason (or fail, with ``skip_if_unavailable=False``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from .errors import ServerStartError
from .serve import ServerConfig, TritonServer, server_directory

__all__ = ["server_unavailable_reason", "triton_server_fixture", "require_triton", "write_small_pfnano"]


def server_unavailable_reason(server_env: str | Path | None = None) -> str | None:
    """Why no local Triton server can start (missing server environment), or None if one can."""
    try:
        server_directory(server_env)
    except ServerStartError as err:
        return str(err)
    return None


def triton_server_fixture(
    taggers: Sequence[str] | Callable[[], Mapping] = ("identity",),
    *,
    scope: str = "session",
    name: str | None = None,
    skip_if_unavailable: bool = True,
    startup_timeout_s: float = 120.0,
    server_env: str | Path | None = None,
    intra_op_threads: int = 1,
    **repository_options,
):
    """A pytest fixture yielding a running :class:`TritonServer`.

    ``taggers`` is a sequence of registry names (served with :func:`coffea_lorentz.models.pretrained`
    weights) or a callable returning the ``{name: module or model.pt path}`` mapping for
    :func:`repository.build_repository` (called when the fixture is first used, not at import).
    ``repository_options`` go to :func:`repository.build_repository`; ``intra_op_threads``
    defaults to 1 to keep test servers light.
    """
    import pytest

    @pytest.fixture(scope=scope, name=name)
    def _triton_server(tmp_path_factory) -> Iterator[TritonServer]:
        from .models import pretrained
        from .repository import build_repository

        reason = server_unavailable_reason(server_env)
        if reason is not None:
            if skip_if_unavailable:
                pytest.skip(f"no local Triton server: {reason}")
            pytest.fail(f"no local Triton server: {reason}")
        mapping = taggers() if callable(taggers) else {tagger: pretrained(tagger) for tagger in taggers}
        repository = build_repository(
            tmp_path_factory.mktemp("triton") / "model_repository",
            mapping,
            intra_op_threads=intra_op_threads,
            **repository_options,
        )
        config = ServerConfig(repository=repository, server_env=server_env, startup_timeout_s=startup_timeout_s)
        with TritonServer(config) as server:
            yield server

    return _triton_server


def require_triton() -> bool:
    """True where a missing Triton server must fail the tests instead of skipping them (``make test``)."""
    return os.environ.get("COFFEA_LORENTZ_REQUIRE_TRITON") == "1"


def write_small_pfnano(path: Path, *, seed: int = 7, layout: str = "new") -> Path:
    """Write a small PFNano-layout file with the awkward cases batching must survive.

    Five events: one with no FatJet, one jet with no constituents, one jet with 150 constituents
    (more than the default 128 kept), and jets of mixed lengths. ``layout="new"`` writes
    ``FatJet_nConstituents`` and stores constituents jet after jet; ``layout="old"`` writes only
    ``FatJetPFCands_jetIdx`` with the constituents of different jets interleaved.
    """
    import awkward as ak
    import numpy as np
    import uproot

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
    with uproot.recreate(path) as file:
        events = file.mktree(
            "Events",
            {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in tree.items()},
            field_name=lambda outer, inner: inner if outer == "" else f"{outer}_{inner}",
            counter_name=lambda counted: f"n{counted}",
        )
        events.extend(tree)
    return path
