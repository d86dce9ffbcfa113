"""In-process ONNX Runtime against TorchScript and eager torch for shipped taggers, side by side.

    .venv/bin/python bench/bench_onnx.py [--taggers lloca] [--batch-size 256] [--n-constituents 32]
                                         [--threads 1 2] [--repeats 9] [--rounds 2]

Each tagger (shipped weights, softmax head) is run as the backends would run it: eager
(``backend="torch"``: ``ScoredTagger``), TorchScript (what Triton serves, ``model.pt``) and ONNX
Runtime on the in-memory export of :func:`coffea_lorentz.export.export_onnx` (``backend="onnx"``,
:func:`coffea_lorentz.infer.onnx_backend.onnx_session`: threads sleep between operators), plus ONNX
Runtime with its own default of spinning threads (``onnx spin``), on one batch of B jets × N
constituents, every backend with the same number of threads. Repetitions are interleaved (eager,
TorchScript, ONNX, ONNX spin, eager, …) after three warm-up passes each, and the medians are
compared: ratios within one process, so a machine whose cores are shared shifts all of them alike.
``--rounds`` repeats the whole measurement to show its spread. Prints one row per tagger, thread
count and round: jets/s of each and the ratios ONNX/TorchScript and ONNX/eager, plus the largest
difference of the probabilities (ONNX vs eager).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from coffea_lorentz.export import ScoredTagger, _example_inputs, export_onnx
from coffea_lorentz.infer.onnx_backend import onnx_session
from coffea_lorentz.models import pretrained
from coffea_lorentz.threads import thread_count


def bench(name: str, *, batch_size: int, n_constituents: int, threads: int, repeats: int) -> dict:
    """jets/s (median of ``repeats`` interleaved calls) of each backend on one [B, N] batch."""
    eager = ScoredTagger(pretrained(name)).eval()
    scripted = torch.jit.script(eager)
    exported = export_onnx(pretrained(name))
    session = onnx_session(exported, threads)
    spinning = onnx_session(exported, threads, spinning=True)
    p4, mask = _example_inputs(batch_size, n_constituents, torch.float32)
    feeds = {"p4": p4.numpy(), "mask": mask.numpy()}
    runs = {
        "eager": lambda: eager(p4, mask),
        "torchscript": lambda: scripted(p4, mask),
        "onnx": lambda: session.run(["score"], feeds)[0],
        "onnx_spin": lambda: spinning.run(["score"], feeds)[0],
    }
    seconds: dict[str, list[float]] = {key: [] for key in runs}
    with thread_count(threads), torch.inference_mode():
        for _ in range(3):  # warm-up: TorchScript's profiling executor optimises over its first calls
            for run in runs.values():
                run()
        for _ in range(repeats):
            for key, run in runs.items():
                started = time.perf_counter()
                run()
                seconds[key].append(time.perf_counter() - started)
        difference = float(np.abs(np.asarray(runs["onnx"]()) - runs["eager"]().numpy()).max())
    rate = {key: batch_size / statistics.median(values) for key, values in seconds.items()}
    return {"tagger": name, "threads": threads, **{f"{key}_jets_per_s": value for key, value in rate.items()},
            "onnx_over_torchscript": rate["onnx"] / rate["torchscript"],
            "onnx_over_eager": rate["onnx"] / rate["eager"],
            "max_abs_difference": difference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taggers", nargs="+", default=["lloca"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-constituents", type=int, default=32)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"B={args.batch_size}, N={args.n_constituents}, median of {args.repeats} interleaved repetitions, "
          f"{args.rounds} rounds")
    print(f"{'tagger':<22}{'thr':>4}{'round':>6}{'eager j/s':>11}{'script j/s':>12}{'onnx j/s':>11}"
          f"{'spin j/s':>10}{'onnx/script':>13}{'onnx/eager':>12}{'max |diff|':>12}", flush=True)
    for round_index in range(args.rounds):
        for name in args.taggers:
            for threads in args.threads:
                row = bench(name, batch_size=args.batch_size, n_constituents=args.n_constituents, threads=threads,
                            repeats=args.repeats)
                print(f"{name:<22}{threads:>4}{round_index + 1:>6}{row['eager_jets_per_s']:>11.0f}"
                      f"{row['torchscript_jets_per_s']:>12.0f}{row['onnx_jets_per_s']:>11.0f}"
                      f"{row['onnx_spin_jets_per_s']:>10.0f}{row['onnx_over_torchscript']:>12.2f}x"
                      f"{row['onnx_over_eager']:>11.2f}x{row['max_abs_difference']:>12.1e}", flush=True)


if __name__ == "__main__":
    main()
