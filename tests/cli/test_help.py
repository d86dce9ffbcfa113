"""Every subcommand answers ``--help``; errors exit non-zero with one line naming what failed."""

from __future__ import annotations

import pytest

from coffea_lorentz.cli import build_parser, main

SUBCOMMANDS = ["run", "serve", "demo", "generate", "train", "evaluate", "reweight-train", "models"]


def test_every_subcommand_is_registered():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert sorted(choices) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: coffea-lorentz" in capsys.readouterr().out


def test_missing_input_exits_non_zero(tmp_path, capsys):
    code = main(["run", str(tmp_path / "absent.root"), "--output", str(tmp_path / "out"), "--backend", "torch"])
    assert code == 1
    assert f"{tmp_path / 'absent.root'}: no such file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_file_without_pf_candidates_exits_non_zero(shared_data, tmp_path, capsys):
    code = main(["run", str(shared_data / "nano_dimuon.root"), "--output", str(tmp_path / "out"), "--backend", "torch"])
    assert code == 1
    err = capsys.readouterr().err
    assert "nano_dimuon.root: missing branches" in err and "PFCands_pt" in err
