"""One tagger on the bundled Triton server as TorchScript and as ONNX Runtime, side by side.

    .venv/bin/python bench/bench_onnx_served.py [--tagger lloca] [--jets 256] [--constituents 32]
        [--requests 12] [--in-flight 4] [--threads 1] [--instances 2] [--repeats 5]

One server, one repository, two models of the same shipped weights, both in the python backend:
``<tagger>`` (what ``serve`` and ``run`` build: ``deploy/python_backend/model.py`` on the
TorchScript export) and ``<tagger>_onnx`` (``deploy/python_backend/spec_model.py`` on the ONNX
export of :func:`coffea_lorentz.export.export_onnx` with a FP32 mask, since that file hands every
input to ONNX Runtime as FP32). Both have ``--instances`` instances of ``--threads`` threads and the
same dynamic batcher. Passes of ``--requests`` gRPC requests of ``--jets`` jets × ``--constituents``,
``--in-flight`` outstanding, alternate between the two models (after a warm-up pass each); prints
each model's median jets/s over ``--repeats`` passes, the ratio ONNX/TorchScript, and the largest
difference of the served probabilities.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from coffea_lorentz.export import export_onnx
from coffea_lorentz.models import pretrained
from coffea_lorentz.repository import build_repository, python_backend_source
from coffea_lorentz.serve import ServerConfig, TritonServer


def _jets(n_jets: int, n_constituents: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """p4 FP32 [n_jets, n_constituents, 4] (E, px, py, pz) GeV and mask bool [n_jets, n_constituents]."""
    rng = np.random.default_rng(seed)
    momentum = rng.normal(scale=30.0, size=(n_jets, n_constituents, 3))
    energy = np.sqrt((momentum**2).sum(-1) + 0.14**2)
    p4 = np.concatenate([energy[..., None], momentum], axis=-1).astype(np.float32)
    lengths = rng.integers(n_constituents // 4, n_constituents + 1, size=n_jets)
    mask = np.arange(n_constituents)[None, :] < lengths[:, None]
    return p4, mask


def add_onnx_model(repository: Path, tagger: str, name: str) -> None:
    """Add model ``name`` to ``repository``: the ONNX export of ``tagger`` (FP32 mask) in the python
    backend's ``spec_model.py``, with the config of the TorchScript model ``tagger`` beside it."""
    config = (repository / tagger / "config.pbtxt").read_text()
    config = config.replace(f'name: "{tagger}"', f'name: "{name}"', 1)
    config = re.sub(r'(name: "mask"\s*data_type: )TYPE_BOOL', r"\1TYPE_FP32", config)
    version = repository / name / "1"
    version.mkdir(parents=True)
    (version / "model.onnx").write_bytes(export_onnx(pretrained(tagger), mask_dtype=torch.float32))
    shutil.copyfile(python_backend_source("spec_model.py"), version / "model.py")
    (repository / name / "config.pbtxt").write_text(config)


class Client:
    """gRPC requests of one batch to one model, ``in_flight`` outstanding."""

    def __init__(self, url: str, model: str, p4: np.ndarray, mask: np.ndarray, in_flight: int):
        import tritonclient.grpc as grpcclient

        self.client = grpcclient.InferenceServerClient(url)
        self.model, self.in_flight, self.n_jets = model, in_flight, len(p4)
        self.inputs = [grpcclient.InferInput("p4", list(p4.shape), "FP32"),
                       grpcclient.InferInput("mask", list(mask.shape), "BOOL" if mask.dtype == bool else "FP32")]
        self.inputs[0].set_data_from_numpy(p4)
        self.inputs[1].set_data_from_numpy(mask)
        self.outputs = [grpcclient.InferRequestedOutput("score")]

    def score(self) -> np.ndarray:
        """The served probabilities [n_jets, n_classes] of one request."""
        return self.client.infer(self.model, self.inputs, outputs=self.outputs).as_numpy("score")

    def jets_per_s(self, n_requests: int) -> float:
        """Jets per second over ``n_requests`` requests."""
        slots = threading.Semaphore(self.in_flight)
        errors: list = []

        def done(result=None, error=None) -> None:
            if error is not None:
                errors.append(error)
            slots.release()

        start = time.perf_counter()
        for _ in range(n_requests):
            slots.acquire()
            self.client.async_infer(self.model, self.inputs, callback=done, outputs=self.outputs)
        for _ in range(self.in_flight):
            slots.acquire()
        elapsed = time.perf_counter() - start
        for _ in range(self.in_flight):
            slots.release()
        if errors:
            raise RuntimeError(f"{self.model}: {errors[0]}")
        return n_requests * self.n_jets / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tagger", default="lloca")
    parser.add_argument("--jets", type=int, default=256)
    parser.add_argument("--constituents", type=int, default=32)
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="threads per instance (torch and ONNX Runtime)")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    p4, mask = _jets(args.jets, args.constituents)
    onnx_name = f"{args.tagger}_onnx"
    with tempfile.TemporaryDirectory() as scratch:
        repository = build_repository(Path(scratch) / "repository", {args.tagger: pretrained(args.tagger)},
                                      intra_op_threads=args.threads, instance_count=args.instances,
                                      max_batch_size=max(1024, args.jets))
        add_onnx_model(repository, args.tagger, onnx_name)
        with TritonServer(ServerConfig(repository=repository)) as server:
            clients = {"torchscript": Client(server.grpc_url, args.tagger, p4, mask, args.in_flight),
                       "onnx": Client(server.grpc_url, onnx_name, p4, mask.astype(np.float32), args.in_flight)}
            difference = float(np.abs(clients["onnx"].score() - clients["torchscript"].score()).max())
            rates: dict[str, list[float]] = {key: [] for key in clients}
            for client in clients.values():  # warm-up: TorchScript's profiling runs, sessions, connections
                client.jets_per_s(2 * args.in_flight)
            for _ in range(args.repeats):
                for key, client in clients.items():
                    rates[key].append(client.jets_per_s(args.requests))
    median = {key: statistics.median(values) for key, values in rates.items()}
    print(f"{args.tagger} served (python backend, {args.instances} instances x {args.threads} thread(s)): "
          f"{args.jets} jets x {args.constituents} constituents per request, {args.in_flight} in flight, "
          f"median of {args.repeats} alternating passes of {args.requests} requests")
    print(f"{'TorchScript jets/s':>20}{'ONNX jets/s':>14}{'ONNX/TorchScript':>18}{'max |diff|':>12}")
    print(f"{median['torchscript']:>20.0f}{median['onnx']:>14.0f}{median['onnx'] / median['torchscript']:>17.2f}x"
          f"{difference:>12.1e}")
    print("passes (TorchScript, ONNX jets/s): " + ", ".join(
        f"({a:.0f}, {b:.0f})" for a, b in zip(rates["torchscript"], rates["onnx"])))


if __name__ == "__main__":
    main()
