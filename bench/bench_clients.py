"""The project's Triton client against coffea's ``triton_wrapper``, same server, same jets, interleaved.

    .venv/bin/python bench/bench_clients.py [--tagger identity] [--jets 20000] [--repetitions 5]
        [--max-constituents N] [--batch-size B] [--threads T] [--instances I]

One server is started at the project's serving defaults (``ServingOptions``; ``--threads`` and
``--instances`` override them for measuring other settings). The jets are synthetic fat jets with
boosted-jet multiplicities (20–160 constituents, truncated at ``--max-constituents``, default: what
``coffea-lorentz run`` keeps for the tagger), padded into the project's length buckets once; both
clients then score exactly the same padded arrays and the scores are compared:

- ``project``: the client as ``coffea-lorentz run`` sets it up against the local server it starts
  (loopback, workers on this host): ``TritonBackend(url, tagger, shared_memory=True)``, the batches
  cut at the served ``max_batch_size`` (``BatchConfig``'s default, ``Backend.request_size()``);
- ``project gRPC``: ``TritonBackend(url, tagger)``, the same batches, inputs inside the gRPC
  messages (what a run sends to a ``--server`` it was given);
- ``coffea``: ``coffea.ml_tools.triton_wrapper`` as its documentation sets it up
  (``triton+grpc://HOST:PORT/MODEL/1``, ``client_args={"ssl": False}`` against a plain server),
  its batch size left to the server's config (its default), one ``numpy_call`` per bucket;
- ``coffea @ B``: the same with ``batch_size=B``, only when ``--batch-size B`` differs from it.

``--batch-size`` (default: the served ``max_batch_size``) cuts the project's batches as
``coffea-lorentz run --batch-size`` does.

Each repetition runs the three in a rotated order; the medians of the wall times give jets/s and
the ratios project ÷ coffea. Timing covers the clients only (no reading or padding), connections
made and warmed up before.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from coffea_lorentz.batch import Batch, BatchConfig, make_batches
from coffea_lorentz.infer import TritonBackend
from coffea_lorentz.models import pretrained
from coffea_lorentz.read import JetConstituents
from coffea_lorentz.repository import ServingOptions, build_repository
from coffea_lorentz.run import default_max_constituents
from coffea_lorentz.serve import ServerConfig, TritonServer


def synthetic_jets(n_jets: int, seed: int = 0) -> JetConstituents:
    """``n_jets`` fat jets (one per event) of 20–160 massless constituents sorted by pT, in GeV."""
    rng = np.random.default_rng(seed)
    n_constituents = rng.integers(20, 161, n_jets)
    total = int(n_constituents.sum())
    pt = rng.exponential(15.0, total).astype(np.float32) + 0.5
    eta = rng.normal(0.0, 0.3, total)
    phi = rng.normal(0.0, 0.3, total)
    p4 = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=-1).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(n_constituents)])
    order = np.concatenate([start + np.argsort(-pt[start:stop]) for start, stop in zip(offsets[:-1], offsets[1:])])
    return JetConstituents(p4=p4[order], pt=pt[order], n_constituents=n_constituents.astype(np.int64),
                           n_jets=np.ones(n_jets, dtype=np.int64))


def buckets_of(batches: list[Batch]) -> list[tuple[np.ndarray, np.ndarray, list[int]]]:
    """The batches joined per padded length N: ``(p4 [n, N, 4], mask [n, N], batch indices)``."""
    by_length: dict[int, list[int]] = {}
    for index, batch in enumerate(batches):
        by_length.setdefault(batch.p4.shape[1], []).append(index)
    return [(np.concatenate([batches[i].p4 for i in members]), np.concatenate([batches[i].mask for i in members]), members)
            for _, members in sorted(by_length.items())]


def run_project(backend: TritonBackend, batches: list[Batch]) -> np.ndarray:
    return np.concatenate(backend.infer_batches(batches))


def run_coffea(wrapper, buckets) -> np.ndarray:
    return np.concatenate([wrapper.numpy_call(["score"], {"p4": p4, "mask": mask})["score"] for p4, mask, _ in buckets])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tagger", default="identity")
    parser.add_argument("--jets", type=int, default=20000)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--max-constituents", type=int, help="default: what coffea-lorentz run keeps for the tagger")
    parser.add_argument("--batch-size", type=int, help="jets per project request (default: the served max_batch_size)")
    parser.add_argument("--threads", type=int, help="torch threads per model instance (default: ServingOptions)")
    parser.add_argument("--instances", type=int, help="model instances (default: ServingOptions)")
    args = parser.parse_args()

    from coffea.ml_tools.triton_wrapper import triton_wrapper as coffea_triton_wrapper

    class triton_wrapper(coffea_triton_wrapper):  # noqa: N801 - coffea's name; subclassing is its documented use
        def prepare_awkward(self, p4, mask):
            return [], {"output_list": ["score"], "input_dict": {"p4": p4, "mask": mask}}

    max_constituents = args.max_constituents or default_max_constituents([args.tagger])
    jets = synthetic_jets(args.jets)

    overrides = {key: value for key, value in (("intra_op_threads", args.threads), ("instance_count", args.instances))
                 if value is not None}
    options = ServingOptions(**overrides)
    with tempfile.TemporaryDirectory() as scratch:
        repository = build_repository(Path(scratch) / "models", {args.tagger: pretrained(args.tagger)}, **overrides)
        with TritonServer(ServerConfig(repository=repository)) as server:
            url = server.grpc_url
            backend = TritonBackend(url, args.tagger, shared_memory=True)
            plain = TritonBackend(url, args.tagger)
            batch_size = args.batch_size or backend.request_size()
            batches = make_batches(jets, BatchConfig(max_constituents=max_constituents, max_batch_size=batch_size))
            buckets = buckets_of(batches)
            order = np.concatenate([batches[i].jet_index for _, _, members in buckets for i in members])
            project_order = np.concatenate([batch.jet_index for batch in batches])
            n_jets = sum(len(batch) for batch in batches)
            coffea_default = triton_wrapper(f"triton+grpc://{url}/{args.tagger}/1", client_args={"ssl": False})
            clients = {
                "project": lambda: run_project(backend, batches),
                "project gRPC": lambda: run_project(plain, batches),
                "coffea": lambda: run_coffea(coffea_default, buckets),
            }
            if batch_size != coffea_default.batch_size:
                coffea_equal = triton_wrapper(f"triton+grpc://{url}/{args.tagger}/1", client_args={"ssl": False},
                                              batch_size=batch_size)
                clients[f"coffea @ {batch_size}"] = lambda: run_coffea(coffea_equal, buckets)
            # warm-up, and the same scores from every client
            reference = None
            for name, call in clients.items():
                scores = call()
                scores = scores[np.argsort(project_order if name.startswith("project") else order)]
                if reference is None:
                    reference = scores
                np.testing.assert_allclose(scores, reference, rtol=0, atol=1e-6, err_msg=name)
            times: dict[str, list[float]] = {name: [] for name in clients}
            names = list(clients)
            for repetition in range(args.repetitions):
                for name in names[repetition % len(names):] + names[: repetition % len(names)]:
                    start = time.perf_counter()
                    clients[name]()
                    times[name].append(time.perf_counter() - start)
            backend.close()
            plain.close()

    coffea_batch = coffea_default.batch_size
    print(f"{args.tagger}: {n_jets} jets, max {max_constituents} constituents, {len(batches)} project requests "
          f"of <= {batch_size} jets in {len(buckets)} buckets; server: {options.instance_count} instance(s), "
          f"{options.intra_op_threads or 'default'} torch thread(s) each, max_batch_size {options.max_batch_size}; "
          f"coffea's default batch size: {coffea_batch}; {os.cpu_count()} cores; "
          f"{args.repetitions} interleaved repetitions, medians")
    print(f"{'client':<18}{'median s':>10}{'jets/s':>10}{'project ÷ this':>16}")
    project_s = statistics.median(times["project"])
    for name, values in times.items():
        median_s = statistics.median(values)
        print(f"{name:<18}{median_s:>10.3f}{n_jets / median_s:>10.0f}{median_s / project_s:>16.2f}")


if __name__ == "__main__":
    main()
