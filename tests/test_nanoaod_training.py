"""Training on NanoAOD end to end, as an analyst does it: generate PFNano files (nominal, an αs-varied
alternative, a third nominal one, tt̄) → fileset JSON → ``reweight-train --fileset`` (closure on
held-out jets and events) → ``run --reweighter`` on the third file → closure on multiplicity, and the
run's event weights equal those the event-level closure uses; and ``train --fileset --signal ttbar
--background qcd`` → ``run --tagger FOLDER`` scoring exactly what the model saw in training.

Generation dominates (a few minutes on two cores): the files are made once per session, small.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from coffea_lorentz.generate import available

pytestmark = pytest.mark.slow

#: Events per generated sample (QCD dijets, pT-hat > 300 GeV: about two FatJets above 250 GeV each).
N_EVENTS = 1500
N_THIRD = 1000
N_TTBAR = 300
ALTERNATIVE_ALPHAS = 0.110
SELECTION = ["--jet-pt-min", "250", "--jet-eta-max", "2.4"]


def _cli(*argv: str, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "coffea_lorentz.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="session")
def nanoaod_samples(tmp_path_factory) -> dict[str, Path]:
    """Generated PFNano files with ``generate pfnano`` (the command line): nominal and alternative
    (``--shower-alphas``) QCD, a third nominal QCD file, tt̄; and ``fileset.json`` naming the first
    three as datasets ``nominal``, ``alternative``, ``ttbar`` (QCD for the tagger: ``nominal``)."""
    if not available():
        pytest.skip("pythia8mc and fastjet are not importable (pip install 'coffea-lorentz[generate]')")
    folder = tmp_path_factory.mktemp("nanoaod")
    common = ["--pthat-min", "300", "--jet-pt-min", "200", "--workers", "2", "--events-per-task", "250", "--quiet"]
    files = {"nominal": folder / "nominal.root", "alternative": folder / "alternative.root",
             "third": folder / "third.root", "ttbar": folder / "ttbar.root"}
    _cli("generate", "pfnano", "--process", "qcd", "-n", str(N_EVENTS), "--seed", "11", "-o", str(files["nominal"]),
         *common)
    _cli("generate", "pfnano", "--process", "qcd", "-n", str(N_EVENTS), "--seed", "12", "--shower-alphas",
         str(ALTERNATIVE_ALPHAS), "-o", str(files["alternative"]), *common)
    _cli("generate", "pfnano", "--process", "qcd", "-n", str(N_THIRD), "--seed", "13", "-o", str(files["third"]),
         *common)
    _cli("generate", "pfnano", "--process", "ttbar", "-n", str(N_TTBAR), "--seed", "14", "-o", str(files["ttbar"]),
         *common)
    fileset = {name: {"files": {path.name: "Events"}} for name, path in files.items() if name != "third"}
    (folder / "fileset.json").write_text(json.dumps(fileset))  # relative paths: relative to the JSON
    return files | {"fileset": folder / "fileset.json"}


def _selected_jets(path: Path) -> dict[str, np.ndarray]:
    """FatJet pT, η and multiplicity of the input ``path``, jets with pT ≥ 250 GeV and |η| ≤ 2.4, and
    ``keep``: which of all its FatJets those are."""
    arrays = uproot.open(path)["Events"].arrays(["FatJet_pt", "FatJet_eta", "FatJet_nConstituents"])
    flat = {key: ak.to_numpy(ak.flatten(arrays[key])) for key in arrays.fields}
    keep = (flat["FatJet_pt"] >= 250) & (np.abs(flat["FatJet_eta"]) <= 2.4)
    return {key: values[keep] for key, values in flat.items()} | {"keep": keep}


def _run_branch(folder: Path, branch: str) -> np.ndarray:
    """A jet branch of a run's chunk files in ``folder`` (one dataset), flattened in input order."""
    chunks = sorted(folder.glob("*.root"))  # names carry the zero-padded entry range
    assert chunks, f"no chunk files in {folder}"
    return np.concatenate([ak.to_numpy(ak.flatten(uproot.open(p)["Events"][branch].array())) for p in chunks])


def _chi2_per_ndf(values: np.ndarray, weights: np.ndarray, reference: np.ndarray, edges: np.ndarray) -> float:
    """χ²/ndf between the normalised weighted histogram of ``values`` and that of ``reference``."""
    h, _ = np.histogram(values, edges, weights=weights)
    h2, _ = np.histogram(values, edges, weights=weights**2)
    r, _ = np.histogram(reference, edges)
    scale_h, scale_r = h.sum(), r.sum()
    variance = h2 / scale_h**2 + r / scale_r**2
    used = variance > 0
    return float((((h / scale_h - r / scale_r) ** 2)[used] / variance[used]).sum() / used.sum())


def test_reweighter_trained_on_filesets_closes_on_a_third_file(nanoaod_samples, tmp_path):
    output = tmp_path / "reweighter"
    done = _cli("reweight-train", "--fileset", str(nanoaod_samples["fileset"]), "--nominal", "nominal",
                "--alternative", "alternative", "--output", str(output), "--name", "shower", "--epochs", "4",
                "--patience", "0", "--max-constituents", "64", "--batch-size", "64",
                "--split", "50", "20", "30", "--threads", "2", "--quiet", *SELECTION)
    assert "chi2/ndf" in done.stdout
    info = json.loads((output / "reweight_shower.json").read_text())
    domain = info["domain"]
    assert domain["selection"] == {"min_pt_gev": 250.0, "max_abs_eta": 2.4} and domain["min_pt_gev"] >= 250
    assert {f["class"] for f in domain["files"]} == {"nominal", "alternative"}
    assert all(len(f["uuid"]) == 36 for f in domain["files"])
    assert min(domain["class_balance"].values()) > 2000
    assert domain["features"][0] == "part_energy" and domain["max_constituents"] == 64
    assert info["split"]["nominal"]["test"] > 300
    # the event-level standard set on held-out events, each weighted by its leading fat jet
    closure = info["closure"]
    assert closure["events"]["n_nominal"] == info["split"]["test_events"]["nominal"] > 300
    for name in ("ht", "n_jets", "leading_jet_pt"):
        entry = closure["observables"][name]
        assert entry["level"] == "event" and entry["ndf_after"] >= 1 and entry["ndf_before"] >= 1, (name, entry)
        assert np.isfinite([entry["chi2_after"], entry["chi2_before"]]).all(), (name, entry)
    assert closure["observables"]["msoftdrop"]["level"] == "jet"
    assert "event observables (held-out events" in done.stdout and "held-out events:" in done.stdout

    run_output = tmp_path / "run"
    _cli("run", str(nanoaod_samples["third"]), "--output", str(run_output), "--tagger", "lorentznet",
         "--reweighter", str(output / "reweight_shower.json"), "--backend", "torch", "--workers", "0",
         "--no-progress")
    weights = _run_branch(run_output / "third", "FatJet_weight_shower")
    third = _selected_jets(nanoaod_samples["third"])
    weights = weights[third["keep"]]
    n_third = third["FatJet_nConstituents"]
    assert np.isfinite(weights).all() and len(weights) > 1000
    alternative = _selected_jets(nanoaod_samples["alternative"])["FatJet_nConstituents"]

    before, after = n_third.mean(), np.average(n_third, weights=weights)
    assert alternative.mean() < before  # a smaller shower αs: fewer constituents
    # at least half of the way (seeded: 60.2 → 52.8 against 51.7 here)
    assert abs(after - alternative.mean()) < 0.5 * abs(before - alternative.mean()), (before, after, alternative.mean())
    edges = np.quantile(np.concatenate([n_third, alternative]), np.linspace(0, 1, 11))
    edges[-1] += 1
    chi2_before = _chi2_per_ndf(n_third, np.ones_like(weights), alternative, edges)
    chi2_after = _chi2_per_ndf(n_third, weights, alternative, edges)
    assert chi2_after < 0.7 * chi2_before, (chi2_before, chi2_after)  # 16.3 → 6.9 here

    # the event weights of the closure are the run's weight_shower of the same (test-split) events
    from coffea_lorentz.fileset_jets import SplitFractions, event_buckets, read_fileset_jets
    from coffea_lorentz.reweight.saving import load_reweighter
    from coffea_lorentz.reweight.workflow import held_out_event_weights
    from coffea_lorentz.run.fileset import load_fileset

    fractions = SplitFractions(train=0.5, val=0.2, test=0.3)
    events = read_fileset_jets(load_fileset([str(nanoaod_samples["third"])]), max_constituents=64,
                               fractions=fractions, progress=False, test_events=True).events
    model, record = load_reweighter(output / "reweight_shower.json")
    _, expected = held_out_event_weights(model.eval(), events, max_constituents=64, epsilon=record["epsilon"],
                                         max_weight=record["max_weight"], prior_ratio=record["prior_ratio"])
    numbers = uproot.open(nanoaod_samples["third"])["Events"].arrays(["run", "luminosityBlock", "event"], library="np")
    test = fractions.codes(event_buckets(numbers["run"], numbers["luminosityBlock"], numbers["event"])) == 2
    run_weights = np.concatenate([uproot.open(p)["Events"]["weight_shower"].array(library="np")
                                  for p in sorted((run_output / "third").glob("*.root"))])
    assert len(run_weights) == len(test) and len(expected) == int(test.sum()) > 200
    assert np.ptp(expected) > 0.1  # weights that differ from event to event
    np.testing.assert_allclose(expected, run_weights[test], rtol=1e-4, atol=1e-5)


def test_tagger_trained_on_filesets_runs_with_identical_inputs(nanoaod_samples, tmp_path):
    """``train --fileset --signal ttbar --background nominal`` → ``run --tagger FOLDER``: each selected
    jet's score in the run equals the trained network applied to that jet's training-time inputs."""
    from coffea_lorentz.fileset_jets import JetSelection, read_fileset_jets
    from coffea_lorentz.models import pretrained
    from coffea_lorentz.run.fileset import load_fileset

    folder = tmp_path / "ttbar_tagger"
    _cli("train", "--tagger", "lorentz_efn", "--fileset", str(nanoaod_samples["fileset"]), "--signal", "ttbar",
         "--background", "nominal", "--max-jets", "600", "--epochs", "2", "--max-constituents", "32",
         "--batch-size", "64", "--threads", "2", "--quiet", "--output", str(folder), *SELECTION)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["domain"]["class_balance"] == {"signal": metrics["domain"]["class_balance"]["signal"],
                                                  "background": 600}
    assert metrics["split"]["by"].startswith("splitmix64") and metrics["domain"]["max_constituents"] == 32

    env = dict(os.environ, COFFEA_LORENTZ_CACHE=str(tmp_path / "cache"))
    run_output = tmp_path / "run"
    _cli("run", str(nanoaod_samples["ttbar"]), "--output", str(run_output), "--tagger", str(folder),
         "--backend", "torch", "--workers", "0", "--no-progress", env=env)
    scores = _run_branch(run_output / "ttbar", "FatJet_ttbar_tagger_score")
    selected = _selected_jets(nanoaod_samples["ttbar"])["keep"]
    assert len(scores) == len(selected)

    jets = read_fileset_jets(load_fileset([str(nanoaod_samples["ttbar"])]), max_constituents=32,
                             selection=JetSelection(min_pt_gev=250, max_abs_eta=2.4), progress=False).sample
    assert len(jets) == int(selected.sum()) > 100
    model = pretrained("lorentz_efn", weights=folder / "lorentz_efn.pt").eval()
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(jets.p4), torch.from_numpy(jets.mask)), dim=-1)[:, 1].numpy()
    np.testing.assert_allclose(scores[selected], expected, atol=1e-5, rtol=0)
