"""What a user reads after ``coffea-lorentz run``: a short summary, no warnings, no tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from coffea_lorentz.testing import require_triton, server_unavailable_reason, write_pfnano_fileset

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(server_unavailable_reason() is not None and not require_triton(),
                       reason=f"no local Triton server: {server_unavailable_reason()}"),
]


def test_a_run_prints_a_short_clean_summary(tmp_path, pfnano_file):
    fileset = write_pfnano_fileset(tmp_path / "inputs", 3)
    fileset["cms"] = {"files": {str(pfnano_file): "Events"}}
    (tmp_path / "fileset.json").write_text(json.dumps(fileset))
    command = [sys.executable, "-m", "coffea_lorentz.cli", "run", str(tmp_path / "fileset.json"),
               "--output", str(tmp_path / "out"), "--chunksize", "4"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    for noise in ("Warning", "warn", "Traceback", "Perhaps you already have a cluster running"):
        assert noise not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) <= 30, text
    assert "manifest.json" in text and "cms" in text and "events written" in text
    assert re.search(r"Triton server .* lloca: \d+ requests \(0 failed\), \d+ jets in \d+ batches", text), text
