"""``bench/bench_client_cpu.py`` at a tiny size against a real Triton server: every client's CPU
figure is measured and the scores agree (the bench checks them before measuring). Timings and
ratios are never asserted."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from coffea_lorentz.testing import require_triton
from coffea_lorentz.testing.triton import server_unavailable_reason

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ("project gRPC", "project shm", "project +batching", "coffea", "project from jets", "coffea from jets")


def test_client_cpu_bench_measures_every_client():
    reason = server_unavailable_reason()
    if reason is not None:
        if require_triton():
            pytest.fail(f"no local Triton server: {reason}")
        pytest.skip(f"no local Triton server: {reason}")
    pytest.importorskip("coffea.ml_tools.triton_wrapper", reason="coffea's triton extra is not installed")
    spec = importlib.util.spec_from_file_location("bench_client_cpu", ROOT / "bench" / "bench_client_cpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = bench.run(n_jets=300, length=32, repetitions=2)
    assert tuple(figures["medians"]) == CLIENTS
    for name in CLIENTS:
        assert figures["cpu_s_per_million"][name] > 0 and figures["medians"][name]["wall_s"] > 0
    assert figures["ratio"]["coffea"] == 1.0 and figures["ratio"]["coffea from jets"] == 1.0
    lines = bench.table(figures).splitlines()
    assert [line.split("  ")[0].strip() for line in lines[2:]] == list(CLIENTS)
