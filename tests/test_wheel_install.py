"""The built wheel, installed (not editable) into a fresh venv, runs a chunk beside an analysis's own ``processors/``.

coffea analyses often keep their processors in a folder named ``processors``; the wheel must not
install anything by that name, and the run model must find its processor inside the library.

The fresh venv has no pip and no packages of its own: the wheel is installed into it by the test
venv's pip (``pip --python``), and the dependencies (coffea, torch, …) come from the test venv's
site-packages through one ``.pth`` line, so nothing is downloaded. ``.pth`` files inside that folder
are not run, so the test venv's editable install of this checkout stays invisible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from coffea_lorentz.testing import write_small_pfnano

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _run(command: list[str], **options) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **options)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of this checkout's package (the checkout itself is left untouched)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "coffea_lorentz", source / "coffea_lorentz", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir", "-q",
          "-w", str(out), str(source)])
    (built,) = out.glob("coffea_lorentz-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, wheel) -> Path:
    """A new venv holding only the installed wheel; dependencies from the test venv's site-packages."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "test-venv-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-cache-dir", "-q", str(wheel)])
    return venv


def test_the_wheel_installs_no_top_level_processors(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {"coffea_lorentz"}
    assert "coffea_lorentz/processors/tagger.py" in names
    assert "coffea_lorentz/weights/lloca.pt" in names


def test_a_chunk_runs_beside_the_analysis_s_own_processors(fresh_venv, tmp_path):
    analysis = tmp_path / "analysis"
    (analysis / "processors").mkdir(parents=True)
    (analysis / "processors" / "__init__.py").write_text('"""The analysis\'s own processors."""\nOWNER = "analysis"\n')
    write_small_pfnano(analysis / "small.root")
    script = (
        "import processors, coffea_lorentz\n"
        "from coffea_lorentz.run import RunConfig, run_tagging\n"
        "assert processors.OWNER == 'analysis', processors.__file__\n"
        "config = RunConfig(taggers=('lloca',), backend='torch', n_workers=0, progress=False)\n"
        "summary = run_tagging(['small.root'], 'out', config)\n"
        "assert summary.complete and summary.events == 5, summary.records\n"
        "print(coffea_lorentz.__file__)\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = _run([str(fresh_venv / "bin" / "python"), "-c", script], cwd=analysis, env=env)
    installed = Path(result.stdout.strip().splitlines()[-1])
    assert installed.is_relative_to(fresh_venv), f"coffea_lorentz came from {installed}, not the fresh venv"
    assert (analysis / "out" / "manifest.json").is_file()
    assert list((analysis / "out" / "small").glob("small-*_000000000000-000000000005.root"))
