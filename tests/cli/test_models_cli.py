"""``coffea-lorentz models``: parser, JSON rows, failures exit non-zero."""

from __future__ import annotations

import argparse
import json

import pytest

from coffea_lorentz.cli import models as models_command


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="coffea-lorentz")
    models_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["models", *argv])
    return args.func(args)


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["--help"])
    assert exit_info.value.code == 0
    assert "FLOPs" in capsys.readouterr().out


def test_json_rows_for_two_taggers(capsys):
    argv = ["--tagger", "lorentznet", "--tagger", "identity", "--batch-size", "4", "--n-constituents", "8"]
    assert run([*argv, "--repeats", "1", "--threads", "1", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["name"] for row in rows] == ["lorentznet", "identity"]
    lorentznet, identity = rows
    assert 0 < lorentznet["parameters"] <= 50_000
    assert lorentznet["flops_per_jet"] > 1e5 and lorentznet["jets_per_s"] > 0
    assert identity["parameters"] == 0 and lorentznet["error"] is None


def test_table_and_size_option(capsys):
    assert run(["--tagger", "baseline", "--size", "large", "--batch-size", "2", "--n-constituents", "4", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "baseline" in out and "large" in out


def test_unknown_tagger_is_an_error():
    with pytest.raises(KeyError, match="no_such_tagger"):
        run(["--tagger", "no_such_tagger"])


def test_a_failing_tagger_exits_one(monkeypatch, capsys):
    def broken(name, **config):
        raise RuntimeError("cannot build")

    monkeypatch.setattr("coffea_lorentz.models.build", broken)
    assert run(["--tagger", "identity", "--batch-size", "2", "--n-constituents", "2", "--repeats", "1"]) == 1
    assert "identity" in capsys.readouterr().err
