"""``coffea-lorentz generate``: help texts, and a tiny run that prints its rate."""

from __future__ import annotations

import argparse

import pytest
import uproot

from coffea_lorentz.cli import generate as generate_cli
from coffea_lorentz.generate import available

requires_generator = pytest.mark.skipif(
    not available(), reason="pythia8mc and fastjet are not importable (pip install 'coffea-lorentz[generate]')"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coffea-lorentz")
    generate_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.mark.parametrize("argv", [["generate", "--help"], ["generate", "pfnano", "--help"], ["generate", "dataset", "--help"]])
def test_help_exits_zero(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(argv)
    assert exit_info.value.code == 0
    assert "usage: coffea-lorentz generate" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["generate", "pfnano", "--process", "wjets", "-n", "5", "-o", "x.root"],
                                  ["generate", "pfnano", "--process", "ttbar", "-o", "x.root"]])
def test_bad_arguments_exit_non_zero(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(argv)
    assert exit_info.value.code == 2


@requires_generator
def test_pfnano_run_writes_the_file_and_prints_counts_and_rates(tmp_path, capsys):
    path = tmp_path / "qcd.root"
    args = _parser().parse_args(
        ["generate", "pfnano", "--process", "qcd", "--events", "12", "--seed", "4", "--pthat-min", "300",
         "--ak4-pt-min", "30", "--output", str(path)]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "qcd: 12 events" in out and "events/s per core" in out and "jets/s per core" in out
    with uproot.open(path) as file:
        assert file["Events"].num_entries == 12
        jet_pt = file["Events"]["Jet_pt"].array(library="np")
        assert sum(len(pts) for pts in jet_pt) > 12 and min(min(pts, default=99.0) for pts in jet_pt) > 30.0


@pytest.mark.parametrize(
    ("values", "expected"),
    [(["500"], 500), (["ttbar=300", "qcd=200"], {"ttbar": 300, "qcd": 200})],
)
def test_dataset_events_one_count_or_one_per_process(values, expected):
    assert generate_cli._events_per_process(values, ["ttbar", "qcd"]) == expected


@pytest.mark.parametrize("values", [["ttbar=300"], ["ttbar=x", "qcd=2"], ["many"], ["ttbar=1", "qcd=1", "wjets=1"]])
def test_dataset_events_errors_name_the_option(values):
    from coffea_lorentz.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="--events"):
        generate_cli._events_per_process(values, ["ttbar", "qcd"])
