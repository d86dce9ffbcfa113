"""Every subcommand answers ``--help``; errors exit non-zero with one line naming what failed."""

from __future__ import annotations

import pytest

from coffea_lorentz.cli import build_parser, main

SUBCOMMANDS = ["run", "serve", "demo", "generate", "train", "evaluate", "reweight-train", "models", "check"]


def test_every_subcommand_is_registered():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert sorted(choices) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: coffea-lorentz" in capsys.readouterr().out


def test_missing_input_and_bad_options_are_refused_before_anything_starts(tmp_path, capsys):
    """A direct input that does not exist, or --chunksize 0 / --maxchunks 0 / --workers -1: exit 2
    with one line naming the input or the option; no output folder is made."""
    present = tmp_path / "present.root"
    present.write_bytes(b"")
    cases = {("run", str(tmp_path / "absent.root")): "argument INPUT: no such file or folder",
             ("run", str(present), "--chunksize", "0"): "argument --chunksize: must be >= 1, got 0",
             ("run", str(present), "--maxchunks", "0"): "argument --maxchunks: must be >= 1, got 0",
             ("run", str(present), "--workers", "-1"): "argument --workers: must be >= 0, got -1"}
    for argv, expected in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--output", str(tmp_path / "out"), "--backend", "torch"])
        assert exit_info.value.code == 2
        assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_folder_is_its_root_files_and_empty_filesets_are_refused(tmp_path, capsys):
    import json

    from coffea_lorentz.errors import InputFileError
    from coffea_lorentz.run.fileset import load_fileset

    folder = tmp_path / "ttbar"
    folder.mkdir()
    with pytest.raises(InputFileError, match="ttbar: a folder without .root files"):
        load_fileset([str(folder)])
    for name in ("b.root", "a.root", "notes.txt"):
        (folder / name).write_bytes(b"")
    assert load_fileset([str(folder)]) == {"ttbar": {"files": {str(folder / "a.root"): "Events",
                                                                 str(folder / "b.root"): "Events"}}}
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"ttbar": {"files": {}}}))
    assert main(["run", str(empty), "--output", str(tmp_path / "out"), "--backend", "torch"]) == 2  # a usage error
    assert "empty.json: the fileset lists no files" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_file_without_pf_candidates_is_a_listed_failure(shared_data, tmp_path, capsys):
    code = main(["run", str(shared_data / "nano_dimuon.root"), "--output", str(tmp_path / "out"), "--backend", "torch",
                 "--workers", "0"])
    assert code == 3
    err = " ".join(capsys.readouterr().out.split())
    assert "nano_dimuon.root (all entries): missing branches" in err and "PFCands_pt" in err
