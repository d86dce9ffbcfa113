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


def test_missing_input_is_a_listed_failure(tmp_path, capsys):
    code = main(["run", str(tmp_path / "absent.root"), "--output", str(tmp_path / "out"), "--backend", "torch",
                 "--workers", "0"])
    assert code == 3  # finished with failures: rerun to resume
    out = " ".join(capsys.readouterr().out.split())
    assert "absent.root" in out and "no such file" in out and "rerun" in out
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_file_without_pf_candidates_is_a_listed_failure(shared_data, tmp_path, capsys):
    code = main(["run", str(shared_data / "nano_dimuon.root"), "--output", str(tmp_path / "out"), "--backend", "torch",
                 "--workers", "0"])
    assert code == 3
    err = " ".join(capsys.readouterr().out.split())
    assert "nano_dimuon.root (all entries): missing branches" in err and "PFCands_pt" in err
