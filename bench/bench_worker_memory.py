"""Resident memory of Dask workers, and whether they imported torch, after each kind of work.

A 2-worker ``LocalCluster``; the CMS PFNano sample (``../shared/data/pfnano.root``) scored by the
default tagger through a local Triton server (``coffea-lorentz run`` chunks), then by the same tagger
in-process on a fresh cluster. Prints the largest worker RSS after each step.

Usage: ``python bench/bench_worker_memory.py``
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

from distributed import Client, LocalCluster  # noqa: E402

from coffea_lorentz.run import RunConfig, run_tagging  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "pfnano.root"


def worker_state() -> dict:
    import sys

    import psutil

    return {"rss_mib": psutil.Process().memory_info().rss / 2**20, "torch": "torch" in sys.modules}


def report(client: Client, step: str) -> None:
    states = client.run(worker_state).values()
    rss = max(state["rss_mib"] for state in states)
    torch = any(state["torch"] for state in states)
    print(f"| {step} | {rss:.0f} MiB | {'yes' if torch else 'no'} |", flush=True)


def main() -> None:
    print("| worker | RSS (largest of 2) | torch imported |\n|---|--:|---|")
    for backend in ("triton", "torch"):
        with tempfile.TemporaryDirectory() as tmp, LocalCluster(n_workers=2, threads_per_worker=1,
                                                                dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            if backend == "triton":
                report(client, "idle")
            run_tagging([SAMPLE], Path(tmp) / "out", RunConfig(backend=backend, scheduler=cluster.scheduler_address,
                                                               chunksize=5, progress=False))
            report(client, f"after `coffea-lorentz run` chunks, backend {backend}")


if __name__ == "__main__":
    main()
