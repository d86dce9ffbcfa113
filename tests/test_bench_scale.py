"""``bench/bench_scale.py`` at a tiny size: the scale table is printed and every chunk is accounted for.

The bench runs :func:`coffea_lorentz.run.run_tagging` in a process per case (identity tagger
in-process); here 2 copies of a small PFNano file cut into 2 chunks each, in-process. Timings are
never asserted, only that they were measured and that the run is whole.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from coffea_lorentz.testing.samples import write_small_pfnano

ROOT = Path(__file__).resolve().parents[1]


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scale_bench_prints_the_table_and_accounts_for_every_chunk(tmp_path, capsys):
    bench = load_bench("bench_scale")
    source = write_small_pfnano(tmp_path / "small.root", layout="new")  # 5 events
    rows_path = tmp_path / "rows.json"
    status = bench.main(["--files", "1", "2", "--chunks-per-file", "2", "--events", "5", "--source", str(source),
                         "--cluster", "in-process", "--cache", str(tmp_path / "cache"), "--output", str(tmp_path / "out"),
                         "--json", str(rows_path)])
    assert status == 0
    printed = capsys.readouterr().out
    rows = json.loads(rows_path.read_text())
    assert [(row["files"], row["chunks"]) for row in rows] == [(1, 2), (2, 4)]  # chunksize 3: entries 0–3, 3–5
    for row in rows:
        assert row["complete"] and row["failed"] == 0
        assert row["done"] == row["manifest_chunks"] == row["chunks"]
        assert set(row["stage_s"]) == set(bench.STAGES) and all(s >= 0 for s in row["stage_s"].values())
        assert row["stage_s"]["chunks"] > 0 and row["wall_s"] > 0 and row["uproot_s"] > 0 and row["peak_rss_mib"] > 0
    lines = printed.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["files", "chunks"])
    assert [line.split()[:2] for line in lines[header + 1:header + 3]] == [["1", "2"], ["2", "4"]]
