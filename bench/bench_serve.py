"""Local Triton server: startup time and gRPC throughput against in-process torch, in one run.

    .venv/bin/python bench/bench_serve.py [--taggers identity lorentznet] [--jets 128]
        [--constituents 32] [--requests 20] [--in-flight 4] [--threads 1]

Prints, per tagger: server startup (s), jets/s through gRPC with ``--in-flight`` concurrent
requests of ``--jets`` jets, jets/s of the same TorchScript model in this process, and their ratio.
Both sides use ``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from coffea_lorentz.export import load_torchscript
from coffea_lorentz.models import pretrained
from coffea_lorentz.repository import build_repository
from coffea_lorentz.serve import ServerConfig, TritonServer


def _jets(n_jets: int, n_constituents: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    momentum = rng.normal(scale=30.0, size=(n_jets, n_constituents, 3))
    energy = np.sqrt((momentum**2).sum(-1))
    p4 = np.concatenate([energy[..., None], momentum], axis=-1).astype(np.float32)
    lengths = rng.integers(n_constituents // 4, n_constituents + 1, size=n_jets)
    mask = np.arange(n_constituents)[None, :] < lengths[:, None]
    return p4, mask


def _grpc_rate(url: str, model: str, p4: np.ndarray, mask: np.ndarray, n_requests: int, in_flight: int) -> float:
    """Jets per second over ``n_requests`` requests with at most ``in_flight`` outstanding."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    inputs = [grpcclient.InferInput("p4", list(p4.shape), "FP32"), grpcclient.InferInput("mask", list(mask.shape), "BOOL")]
    inputs[0].set_data_from_numpy(p4)
    inputs[1].set_data_from_numpy(mask)
    outputs = [grpcclient.InferRequestedOutput("score")]
    slots = threading.Semaphore(in_flight)
    errors: list = []

    def done(result=None, error=None) -> None:
        if error is not None:
            errors.append(error)
        slots.release()

    def pump(count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            slots.acquire()
            client.async_infer(model, inputs, callback=done, outputs=outputs)
        for _ in range(in_flight):
            slots.acquire()
        for _ in range(in_flight):
            slots.release()
        return time.perf_counter() - start

    pump(3 * in_flight)  # warm-up: TorchScript profiling runs, batcher and connection set-up
    elapsed = pump(n_requests)
    if errors:
        raise RuntimeError(f"{model}: {errors[0]}")
    return n_requests * p4.shape[0] / elapsed


def _local_rate(model_path: Path, p4: np.ndarray, mask: np.ndarray, n_requests: int) -> float:
    module = load_torchscript(model_path)
    p4_tensor, mask_tensor = torch.from_numpy(p4), torch.from_numpy(mask)
    with torch.no_grad():
        for _ in range(3):  # warm-up: TorchScript profiling runs
            module(p4_tensor, mask_tensor)
        start = time.perf_counter()
        for _ in range(n_requests):
            module(p4_tensor, mask_tensor).numpy()
        elapsed = time.perf_counter() - start
    return n_requests * p4.shape[0] / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--taggers", nargs="+", default=["identity", "lorentznet"])
    parser.add_argument("--jets", type=int, default=128)
    parser.add_argument("--constituents", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    p4, mask = _jets(args.jets, args.constituents)
    print(f"{args.jets} jets x {args.constituents} constituents per request, {args.requests} requests, "
          f"{args.in_flight} in flight, {args.threads} torch thread(s)")
    print(f"{'tagger':<14}{'startup s':>10}{'gRPC jets/s':>14}{'local jets/s':>14}{'gRPC/local':>12}")
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.taggers:
            repository = build_repository(
                Path(scratch) / name, {name: pretrained(name)}, intra_op_threads=args.threads,
                max_batch_size=max(1024, args.jets),
            )  # fmt: skip
            with TritonServer(ServerConfig(repository=repository)) as server:
                grpc_rate = _grpc_rate(server.grpc_url, name, p4, mask, args.requests, args.in_flight)
                startup_s = server.startup_s
            local_rate = _local_rate(repository / name / "1" / "model.pt", p4, mask, args.requests)
            print(f"{name:<14}{startup_s:>10.2f}{grpc_rate:>14.0f}{local_rate:>14.0f}{grpc_rate / local_rate:>12.2f}")


if __name__ == "__main__":
    main()
