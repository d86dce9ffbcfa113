"""The README's tagger table holds the zoo's actual parameter counts and FLOPs per jet.

The table is printed by ``bench/readme_figures.py models`` (the command the README names above it);
this test recomputes its deterministic columns the same way and compares them with README.md, so a
change of a tagger's architecture that is not re-measured fails here. Timings are never asserted.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COMMAND = "bench/readme_figures.py models"


def _figures_module():
    spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "bench" / "readme_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _readme_table(header: str) -> dict[str, tuple[str, str]]:
    """``{registry name: (parameters, MFLOPs)}`` of the table under the README line naming COMMAND."""
    text = README.read_text()
    at = text.find(COMMAND)
    assert at >= 0, f"README.md does not name `{COMMAND}`"
    start = text.find(header, at)
    assert start >= 0, f"README.md: no table `{header}` after `{COMMAND}`"
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[1].strip("`")] = (cells[2], cells[3])
    return rows


@pytest.fixture(scope="module")
def figures():
    """The bench script as a module and its rows now: ``{registry name: (parameters, MFLOPs)}``."""
    module = _figures_module()
    rows = {}
    for line in module.model_rows(timing=False)[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[1].strip("`")] = (cells[2], cells[3])
    return module, rows


def test_readme_tagger_table_matches_the_models(figures):
    module, expected = figures
    readme = _readme_table(module.HEADER.splitlines()[0])
    assert set(readme) == set(expected), "README's tagger table lists other taggers than the registry"
    wrong = {name: (readme[name], expected[name]) for name in expected if readme[name] != expected[name]}
    assert not wrong, f"README (parameters, MFLOPs) vs the models now; rerun `{COMMAND}`: {wrong}"


def test_readme_parameter_counts_elsewhere_agree_with_the_table(figures):
    """The training tables quote parameters too: each quoted count is the tagger's count."""
    counts = {name: parameters for name, (parameters, _) in figures[1].items()}
    text = README.read_text()
    quoted = re.findall(r"^\| (\w+)(?: \(non-equivariant\))? \| ([\d,]+) \|", text, re.M)
    checked = [(name, value) for name, value in quoted if name in counts]
    if not checked:
        pytest.fail("README.md quotes no parameter count in a training table")
    wrong = [(name, value, counts[name]) for name, value in checked if value != counts[name]]
    assert not wrong, f"README quotes (tagger, parameters, actual): {wrong}"
