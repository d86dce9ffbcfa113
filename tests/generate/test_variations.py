"""Generator variations for reweighting tests: shower αs, hadronisation tune, process mix."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import uproot

from coffea_lorentz.cli import generate as generate_cli
from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.generate import GeneratorConfig, available
from coffea_lorentz.generate.pythia import pythia_settings, variation_settings
from coffea_lorentz.generate.runner import make_tasks

NEEDS_GENERATOR = "pythia8mc and fastjet are not importable (pip install 'coffea-lorentz[generate]')"


def test_variation_lines_put_the_tune_before_the_coupling():
    assert variation_settings(shower_alphas=0.11, tune="7") == ("Tune:pp = 7", "TimeShower:alphaSvalue = 0.11")
    assert variation_settings(tune="StringZ:aLund=0.6, StringZ:bLund=0.9") == ("StringZ:aLund = 0.6",
                                                                               "StringZ:bLund = 0.9")
    assert variation_settings() == ()
    config = GeneratorConfig(process="qcd", pthat_min_gev=300, extra_settings=variation_settings(shower_alphas=0.11))
    assert pythia_settings(config, 5)[-1] == "TimeShower:alphaSvalue = 0.11"
    with pytest.raises(InvalidInputError, match="shower alpha_s"):
        variation_settings(shower_alphas=0.5)
    with pytest.raises(InvalidInputError, match="aLund"):
        variation_settings(tune="aLund")


def test_a_variation_draws_its_own_seeds():
    nominal = GeneratorConfig(process="qcd", pthat_min_gev=300)
    varied = GeneratorConfig(process="qcd", pthat_min_gev=300, extra_settings=variation_settings(shower_alphas=0.11))
    seeds = [t.seed for t in make_tasks(nominal, n_events=4, seed=1, events_per_task=2)]
    assert seeds != [t.seed for t in make_tasks(varied, n_events=4, seed=1, events_per_task=2)]
    assert seeds == [t.seed for t in make_tasks(nominal, n_events=4, seed=1, events_per_task=2)]


def test_process_mix_counts():
    assert generate_cli._process_mix(["qcd"], 10) == {"qcd": 10}
    assert generate_cli._process_mix(["ttbar=0.3", "qcd=0.7"], 10) == {"ttbar": 3, "qcd": 7}
    with pytest.raises(InvalidInputError, match="add up to 1"):
        generate_cli._process_mix(["ttbar=0.3", "qcd=0.3"], 10)
    with pytest.raises(InvalidInputError, match="no event"):
        generate_cli._process_mix(["ttbar=0.01", "qcd=0.99"], 10)


def test_alternative_and_a_variation_together_are_refused():
    args = argparse.Namespace(shower_alphas=0.11, hadronisation_tune=None, alternative=True)
    with pytest.raises(InvalidInputError, match="--alternative"):
        generate_cli._variation(args)


@pytest.mark.skipif(not available(), reason=NEEDS_GENERATOR)
def test_a_mixed_file_holds_both_processes_with_unique_event_numbers(tmp_path, capsys):
    from coffea_lorentz.cli import main

    path = tmp_path / "mix.root"
    assert main(["generate", "pfnano", "--process", "ttbar=0.5", "qcd=0.5", "-n", "12", "--events-per-task", "3",
                 "--pthat-min", "300", "--hadronisation-tune", "StringZ:aLund=0.6", "--shower-alphas", "0.12",
                 "--quiet", "-o", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "ttbar: 6 events" in printed and "qcd: 6 events" in printed
    numbers = uproot.open(path)["Events"].arrays(["run", "luminosityBlock", "event"], library="np")
    keys = set(zip(numbers["run"].tolist(), numbers["luminosityBlock"].tolist(), numbers["event"].tolist()))
    assert len(keys) == 12
    assert np.array_equal(np.unique(numbers["luminosityBlock"]), np.arange(1, 5))
