"""The Triton client's own CPU seconds per million jets: the project's client against coffea's ``triton_wrapper``.

    python bench/bench_client_cpu.py [--jets 20000] [--max-constituents 128] [--repetitions 5] [--tagger identity]

What a worker pays for scoring when the server is another machine is the client's CPU time, not
the wall time (which is the server's). One local Triton server serves the tagger at the project's
serving defaults; the same jets (synthetic fat jets of 20–160 constituents, cut at
``--max-constituents`` and all padded to that one length N, ``p4`` float32 [n, N, 4] + ``mask``
bool [n, N]) go to it through:

- ``project gRPC``: ``TritonBackend(url, tagger).infer_batches`` — the client ``coffea-lorentz run``
  uses, requests cut at the served ``max_batch_size``, inputs inside the gRPC messages: what a
  remote server sees (the figure the goal is about);
- ``project shm``: the same with ``shared_memory=True`` (only possible with the server on this
  host, as for the local server ``run`` starts);
- ``project +batching``: the gRPC client plus the padding from the jagged constituents
  (:func:`coffea_lorentz.batch.make_batches` with one bucket N, batches of the served
  ``max_batch_size``), the full path of a run (coffea's row has no padding in it);
- ``coffea``: ``coffea.ml_tools.triton_wrapper`` at its defaults (batch size from the server's
  config, synchronous requests), subclassed with ``prepare_awkward`` as its documentation says,
  one ``numpy_call`` on the padded arrays (its cheapest path; ``client_args={"ssl": False}``
  against a plain server).

and, from the jagged constituents to the scores (what a worker really pays per chunk):

- ``project from jets``: :func:`coffea_lorentz.batch.make_batches` at the run's defaults (length
  buckets up to N, batches of the served ``max_batch_size``) and the gRPC client;
- ``coffea from jets``: the padding a coffea analysis writes for ``triton_wrapper`` (awkward:
  ``ak.unflatten`` → ``ak.pad_none(…, N, clip=True)`` → ``ak.fill_none`` → ``ak.to_numpy``, the
  mask from ``ak.is_none``), then its ``numpy_call``. These two rows are compared with each other.

Each repetition runs the clients in a rotated order; CPU time is ``time.process_time()`` of this
process only (every thread of the client, not the server's processes). Printed: medians of CPU
seconds per million jets and of wall seconds, and the ratio project ÷ coffea.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_clients import synthetic_jets  # noqa: E402

from coffea_lorentz.batch import Batch, BatchConfig, make_batches  # noqa: E402
from coffea_lorentz.infer import TritonBackend  # noqa: E402


def padded(jets, length: int) -> Batch:
    """All jets in one batch padded to ``length`` (the project's own padding, one bucket)."""
    batches = padded_batches(jets, length)
    return Batch(p4=np.concatenate([b.p4 for b in batches]), mask=np.concatenate([b.mask for b in batches]),
                 jet_index=np.concatenate([b.jet_index for b in batches]))


def coffea_wrapper(url: str, tagger: str):
    """coffea's ``triton_wrapper`` for ``tagger`` at ``url`` at its defaults (ssl off: a plain server)."""
    from coffea.ml_tools.triton_wrapper import triton_wrapper

    class ZooWrapper(triton_wrapper):
        def prepare_awkward(self, p4, mask):
            return [], {"output_list": ["score"], "input_dict": {"p4": p4, "mask": mask}}

    return ZooWrapper(f"triton+grpc://{url}/{tagger}/1", client_args={"ssl": False})


def measure(clients: dict, repetitions: int) -> dict[str, dict[str, list[float]]]:
    """``{client: {"cpu_s": [...], "wall_s": [...]}}`` over ``repetitions`` rotated rounds."""
    times = {name: {"cpu_s": [], "wall_s": []} for name in clients}
    names = list(clients)
    for repetition in range(repetitions):
        for name in names[repetition % len(names):] + names[: repetition % len(names)]:
            cpu, wall = time.process_time(), time.perf_counter()
            clients[name]()
            times[name]["cpu_s"].append(time.process_time() - cpu)
            times[name]["wall_s"].append(time.perf_counter() - wall)
    return times


def run(*, n_jets: int, length: int, repetitions: int, tagger: str = "identity") -> dict:
    """Start a server, check that every client returns the same scores, measure; returns the figures."""
    from coffea_lorentz.models import pretrained
    from coffea_lorentz.repository import build_repository
    from coffea_lorentz.serve import ServerConfig, TritonServer

    jets = synthetic_jets(n_jets)
    batch = padded(jets, length)
    with tempfile.TemporaryDirectory(prefix="bench-client-cpu-") as scratch:
        repository = build_repository(Path(scratch) / "models", {tagger: pretrained(tagger)})
        with TritonServer(ServerConfig(repository=repository)) as server:
            url = server.grpc_url
            plain = TritonBackend(url, tagger)
            size = plain.request_size()  # a run pads batches of the served max_batch_size
            shared = TritonBackend(url, tagger, shared_memory=True)
            coffea = coffea_wrapper(url, tagger)
            clients = {
                "project gRPC": lambda: plain.infer_batches([batch])[0],
                "project shm": lambda: shared.infer_batches([batch])[0],
                "project +batching": lambda: np.concatenate(plain.infer_batches(padded_batches(jets, length, size))),
                "coffea": lambda: coffea.numpy_call(["score"], {"p4": batch.p4, "mask": batch.mask})["score"],
                "project from jets": lambda: in_jet_order(bucketed := make_batches(jets, BatchConfig(
                    max_constituents=length, max_batch_size=size)), plain.infer_batches(bucketed)),
                "coffea from jets": lambda: coffea.numpy_call(["score"], dict(zip(("p4", "mask"), pad_with_awkward(
                    jets, length))))["score"],
            }
            reference = clients["coffea"]()
            for name, call in clients.items():  # warm-up, and the same scores from every client
                np.testing.assert_allclose(call(), reference, rtol=0, atol=1e-6, err_msg=name)
            times = measure(clients, repetitions)
            served_batch = plain.request_size()
            coffea_batch = coffea.batch_size
            plain.close()
            shared.close()
    medians = {name: {key: statistics.median(values) for key, values in figures.items()} for name, figures in times.items()}
    return {"jets": n_jets, "length": length, "repetitions": repetitions, "tagger": tagger,
            "project_batch": served_batch, "coffea_batch": coffea_batch, "medians": medians,
            "cpu_s_per_million": {name: 1e6 * m["cpu_s"] / n_jets for name, m in medians.items()},
            "ratio": {name: m["cpu_s"] / medians[_baseline(name)]["cpu_s"] for name, m in medians.items()}}


def _baseline(name: str) -> str:
    """The coffea row a client row is compared with (the same starting point: padded arrays or jagged jets)."""
    return "coffea from jets" if name.endswith("from jets") else "coffea"


def in_jet_order(batches: list[Batch], outputs: list[np.ndarray]) -> np.ndarray:
    """Per-batch outputs [b, K] scattered back to jet order [n_jets, K]."""
    n_jets = sum(len(batch.jet_index) for batch in batches)
    scores = np.empty((n_jets, outputs[0].shape[1]), dtype=outputs[0].dtype)
    for batch, output in zip(batches, outputs):
        scores[batch.jet_index] = output
    return scores


def pad_with_awkward(jets, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``p4`` float32 [n, length, 4] and ``mask`` bool [n, length] made as a coffea analysis pads jagged constituents."""
    import awkward as ak

    jagged = ak.unflatten(jets.p4, jets.n_constituents)
    padded_jets = ak.pad_none(jagged, length, axis=1, clip=True)
    mask = ~ak.to_numpy(ak.is_none(padded_jets, axis=1))
    p4 = ak.to_numpy(ak.fill_none(padded_jets, np.zeros(4, np.float32), axis=1)).astype(np.float32, copy=False)
    return p4, mask


def padded_batches(jets, length: int, size: int | None = None) -> list[Batch]:
    """The batches a run makes with one bucket of ``length``, ``size`` jets each (None: all in one)."""
    size = size or len(jets.n_constituents)
    return make_batches(jets, BatchConfig(max_constituents=length, buckets=(length,), max_batch_size=size))


def table(figures: dict) -> str:
    lines = [f"{figures['tagger']}: {figures['jets']} jets padded to N={figures['length']}, project requests of "
             f"<= {figures['project_batch']} jets (served max_batch_size), coffea's default batch size "
             f"{figures['coffea_batch']}; {figures['repetitions']} interleaved repetitions, medians; "
             f"{os.cpu_count()} cores, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
             f"{'client':<20}{'CPU s / 1M jets':>16}{'wall s':>9}{'CPU ÷ coffea':>14}  (rows 'from jets': "
             "÷ 'coffea from jets')"]
    for name, median in figures["medians"].items():
        lines.append(f"{name:<20}{figures['cpu_s_per_million'][name]:>16.2f}{median['wall_s']:>9.3f}"
                     f"{figures['ratio'][name]:>14.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=20000)
    parser.add_argument("--max-constituents", type=int, default=128, help="the one padded length N (default 128)")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--tagger", default="identity")
    args = parser.parse_args(argv)
    print(table(run(n_jets=args.jets, length=args.max_constituents, repetitions=args.repetitions, tagger=args.tagger)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
