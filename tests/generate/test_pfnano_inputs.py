"""What models read from a generated PFNano file: AK4 jets and their constituents, track parameters,
the feature library on them — and a file NanoEvents reads without a single warning."""

from __future__ import annotations

import subprocess
import sys
import warnings

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from coffea_lorentz.generate import available

requires_generator = pytest.mark.skipif(
    not available(), reason="pythia8mc and fastjet are not importable (pip install 'coffea-lorentz[generate]')"
)

#: The AK4 threshold of the generated ``Jet`` collection (GeV).
AK4_PT_MIN_GEV = 15.0


def _events(path, mode: str = "eager"):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode=mode).events()


def test_the_cross_reference_branches_cover_every_index_coffea_resolves():
    from coffea.nanoevents import PFNanoAODSchema

    from coffea_lorentz.generate.pfnano import CROSS_REFERENCE_FIELDS

    written = {"FatJet", "Jet", "PFCands", "FatJetPFCands", "JetPFCands", "GenPart"} | set(CROSS_REFERENCE_FIELDS)
    for indexer, target in PFNanoAODSchema.all_cross_references.items():
        collection, field = indexer.split("_", 1)
        assert collection in written and target in written, indexer
        if collection in CROSS_REFERENCE_FIELDS:
            assert field in CROSS_REFERENCE_FIELDS[collection], indexer


@requires_generator
@pytest.mark.parametrize("mode", ["eager", "virtual", "dask"])
def test_coffea_reads_the_generated_file_without_a_warning(pfnano_ttbar, mode):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        events = _events(pfnano_ttbar, mode)
        # the collections that exist only to satisfy cross-references are valid, and empty
        checks = {name: ak.num(events[name], axis=1)
                  for name in ("Electron", "Muon", "Photon", "Tau", "SV", "FatJetSVs", "JetSVs", "GenJet", "SubJet")}
        checks["muons of a jet"] = ak.num(ak.drop_none(events.Jet.matched_muons, axis=2), axis=2)  # index -1: none
        checks["constituents"] = ak.num(events.Jet.constituents.pf, axis=2) - events.Jet.nConstituents
        if mode == "dask":
            import dask

            (checks,) = dask.compute(checks)
    for name, values in checks.items():
        assert ak.all(values == 0), name


@requires_generator
def test_every_ak4_jet_is_the_sum_of_its_pfcands(pfnano_ttbar):
    events = _events(pfnano_ttbar)
    jet, links = events.Jet, events.JetPFCands
    assert ak.sum(ak.num(jet)) > 100
    assert ak.all(jet.pt > AK4_PT_MIN_GEV) and ak.all(jet.pt[:, :-1] >= jet.pt[:, 1:])
    assert ak.all((links.pFCandsIdx >= 0) & (links.pFCandsIdx < ak.num(events.PFCands)))
    assert ak.all((links.jetIdx >= 0) & (links.jetIdx < ak.num(jet)))
    assert ak.all(ak.sum(jet.nConstituents, axis=1) == ak.num(links))
    # anti-kT partitions the particles: no PF candidate is in two AK4 jets
    event = ak.broadcast_arrays(ak.local_index(links.pFCandsIdx, axis=0), links.pFCandsIdx)[0]
    candidate = ak.to_numpy(ak.flatten(event * 1_000_000 + links.pFCandsIdx))
    assert len(np.unique(candidate)) == len(candidate)
    # the link's pt is the candidate's, and the candidates add up to the jet (E-scheme)
    pf = events.PFCands[links.pFCandsIdx]
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(links.pt)), ak.to_numpy(ak.flatten(pf.pt)))
    pf = jet.constituents.pf
    px = ak.sum(pf.pt * np.cos(pf.phi), axis=-1)
    py = ak.sum(pf.pt * np.sin(pf.phi), axis=-1)
    pz = ak.sum(pf.pt * np.sinh(pf.eta), axis=-1)
    energy = ak.sum(np.sqrt((pf.pt * np.cosh(pf.eta)) ** 2 + pf.mass**2), axis=-1)
    pt = np.hypot(px, py)
    mass = np.sqrt(np.maximum(energy**2 - pt**2 - pz**2, 0))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(pt)), ak.to_numpy(ak.flatten(jet.pt)), rtol=1e-4)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(np.arcsinh(pz / pt))), ak.to_numpy(ak.flatten(jet.eta)),
                               atol=1e-4)
    dphi = (ak.to_numpy(ak.flatten(np.arctan2(py, px) - jet.phi)) + np.pi) % (2 * np.pi) - np.pi
    np.testing.assert_allclose(dphi, 0.0, atol=1e-4)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(mass)), ak.to_numpy(ak.flatten(jet.mass)), rtol=2e-3, atol=0.02)


@requires_generator
def test_track_parameters_follow_the_cms_conventions(pfnano_ttbar, pfnano_file):
    events = _events(pfnano_ttbar)
    pf = events.PFCands
    neutral = pf.charge == 0
    charged = ~neutral
    assert ak.sum(neutral) > 100 and ak.sum(charged) > 100
    for field in ("d0", "dz"):
        assert ak.all(pf[field][neutral] == 0), field
    for field in ("d0Err", "dzErr", "trkChi2", "lostInnerHits"):
        assert ak.all(pf[field][neutral] == -1), field
    assert ak.all(pf.pvAssocQuality[neutral] == 7) and ak.all(pf.trkQuality[neutral] == 0)
    assert ak.all((pf.d0Err[charged] > 0) & (pf.dzErr[charged] > 0) & (pf.trkChi2[charged] > 0))
    assert ak.all(pf.puppiWeight[charged] == 1)
    assert ak.all((pf.puppiWeight >= 0) & (pf.puppiWeight <= 1))
    assert set(np.unique(ak.to_numpy(ak.flatten(pf.lostInnerHits[charged])))) <= {-1, 0, 1}
    assert set(np.unique(ak.to_numpy(ak.flatten(pf.pvAssocQuality[charged])))) <= {4, 7}
    assert set(np.unique(ak.to_numpy(ak.flatten(pf.trkQuality[charged])))) <= {1, 5}
    # tracks used in the vertex fit are prompt: their impact-parameter significance is a unit Gaussian
    prompt = charged & (pf.pvAssocQuality == 7)
    pull = ak.to_numpy(ak.flatten(pf.d0[prompt] / pf.d0Err[prompt]))
    assert 0.55 < np.median(np.abs(pull)) < 0.85  # 0.674 for N(0, 1)
    # the same branches and dtypes as the real CMS PFNano
    with uproot.open(pfnano_ttbar) as ours, uproot.open(pfnano_file) as cms:
        for field in ("d0", "d0Err", "dz", "dzErr", "puppiWeight", "trkChi2", "lostInnerHits", "pvAssocQuality",
                      "trkQuality"):
            name = f"PFCands_{field}"
            assert ours["Events"][name].interpretation.content.to_dtype == \
                cms["Events"][name].interpretation.content.to_dtype, name
        for name in ("Jet_pt", "Jet_nConstituents", "JetPFCands_jetIdx", "JetPFCands_pFCandsIdx", "JetPFCands_pt"):
            assert ours["Events"][name].interpretation.content.to_dtype == \
                cms["Events"][name].interpretation.content.to_dtype, name


def test_impact_parameters_are_those_of_the_line_from_the_production_vertex():
    from coffea_lorentz.generate.tracks import TrackModel, track_parameters

    exact = TrackModel(d0_floor_cm=1e-9, d0_scattering_cm_gev=1e-9, dz_floor_cm=1e-9, dz_scattering_cm_gev=1e-9)
    # a track from (x, y, z) = (10, 0, 5) mm going along +y at η = 0, and a neutral from the same place
    out = track_parameters(pt=np.array([20.0, 20.0]), eta=np.array([0.0, 0.0]), phi=np.array([np.pi / 2] * 2),
                           charge=np.array([1, 0]), vertex_mm=(np.array([10.0] * 2), np.zeros(2), np.array([5.0] * 2)),
                           rng=np.random.default_rng(1), model=exact)
    np.testing.assert_allclose(out["d0"], [-1.0, 0.0], atol=1e-6)  # cm: −x·p_y/p_T
    np.testing.assert_allclose(out["dz"], [0.5, 0.0], atol=1e-6)
    assert out["lostInnerHits"].tolist() == [-1, -1] and out["pvAssocQuality"].tolist() == [4, 7]
    assert {name: array.dtype for name, array in out.items()}["d0"] == np.float32

    # from the origin: d0/σ and dz/σ are N(0, 1), same seed → same values
    n = 20_000
    rng = np.random.default_rng(2)
    kinematics = dict(pt=rng.uniform(0.5, 50, n), eta=rng.uniform(-2.5, 2.5, n), phi=rng.uniform(-np.pi, np.pi, n),
                      charge=np.ones(n, dtype=int), vertex_mm=(np.zeros(n),) * 3)
    first = track_parameters(**kinematics, rng=np.random.default_rng(5))
    again = track_parameters(**kinematics, rng=np.random.default_rng(5))
    for field in ("d0", "dz"):
        pull = first[field] / first[field + "Err"]
        assert abs(np.mean(pull)) < 0.03 and abs(np.std(pull) - 1) < 0.03, field
        np.testing.assert_array_equal(first[field], again[field])


@requires_generator
def test_the_feature_library_computes_ak4_jet_inputs(pfnano_ttbar):
    from coffea_lorentz.modelspec import ModelSpec
    from coffea_lorentz.spec_batch import spec_inputs

    names = ["part_deta", "part_dphi", "part_pt_log", "part_logptrel", "part_d0", "part_dz", "part_d0err",
             "part_charge", "part_isPhoton", "pfcand_dxysig", "pfcand_dzsig", "pfcand_lostInnerHits",
             "pfcand_VTX_ass", "pfcand_quality", "pfcand_normchi2", "pfcand_puppiw"]
    spec = ModelSpec.from_json({"format": "coffea-lorentz-model-spec/1", "inputs": [
        {"name": "pf_features", "length": 64, "variables": [{"name": name} for name in names]}]})
    events = _events(pfnano_ttbar, "virtual")
    inputs = spec_inputs(events, spec, collection="Jet", batch_size=128)
    assert inputs.total_jets == ak.sum(ak.num(events.Jet))
    objects = inputs.objects["PFCands"]
    np.testing.assert_array_equal(objects.n_per_jet, ak.to_numpy(ak.flatten(events.Jet.nConstituents)))
    values = {name: objects.variable(name) for name in names}
    for name, value in values.items():
        assert np.isfinite(value).all(), name
    delta_r = np.hypot(values["part_deta"], values["part_dphi"])
    # anti-kT R = 0.4 in (rapidity, φ): in (η, φ) soft massive constituents may lie further out
    assert np.quantile(delta_r, 0.9) < 0.4, np.quantile(delta_r, 0.9)
    neutral = values["part_charge"] == 0
    assert neutral.any() and (~neutral).any()
    assert np.all(values["part_d0"][neutral] == 0) and np.all(values["part_dz"][neutral] == 0)
    assert np.all(np.abs(values["part_d0"]) < 1)
    for batch in inputs:
        tensor = batch.tensors["pf_features"]
        assert tensor.shape[1:] == (len(names), 64) and np.isfinite(tensor).all()


def _run_on_a_terminal(argv: list[str], timeout_s: float) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal (C++ streams are flushed line by line
    there, as in an interactive shell; into a pipe a worker's banner may never be flushed)."""
    import os
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process and its workers are gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return process.wait(timeout=timeout_s), b"".join(chunks).decode(errors="replace")


@requires_generator
def test_the_fastjet_banner_appears_once_per_process(tmp_path):
    script = tmp_path / "two_runs.py"
    script.write_text(
        "from coffea_lorentz.generate import GeneratorConfig, generate_pfnano\n"
        "if __name__ == '__main__':\n"
        "    generator = GeneratorConfig(process='ttbar', pthat_min_gev=300.0)\n"
        "    for name, workers in (('a', 2), ('b', 1)):  # two spawned workers, then this process\n"
        f"        generate_pfnano({str(tmp_path)!r} + f'/{{name}}.root', generator=generator, n_events=4, seed=1,\n"
        "                        workers=workers, events_per_task=2)\n"
    )
    returncode, output = _run_on_a_terminal([sys.executable, str(script)], timeout_s=300)
    assert returncode == 0, output[-2000:]
    assert output.count("FastJet release") == 1, output[-3000:]


class _TrackSums(torch.nn.Module):
    """A three-class model you could bring: softmax of (Σ tanh d0, Σ tanh dz, n/10) over a jet's constituents."""

    def forward(self, pf_features, pf_mask):
        summed = (pf_features * pf_mask).sum(-1)  # [B, 3]
        return torch.softmax(summed, dim=-1)


@requires_generator
def test_run_collection_jet_on_a_generated_file_writes_per_class_branches(pfnano_ttbar, tmp_path):
    """``run --collection Jet`` with a three-class model on the generated AK4 jets: one entry per AK4 jet in
    each ``Jet_<name>_<class>`` branch, read back with NanoEvents, equal to a reference from the raw branches."""
    import json

    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    length = 128
    raw = uproot.open(pfnano_ttbar)["Events"].arrays(
        ["nJet", "JetPFCands_jetIdx", "JetPFCands_pFCandsIdx", "PFCands_d0", "PFCands_dz"], library="ak")
    assert ak.max(ak.num(raw.JetPFCands_jetIdx)) > 0
    per_jet = ak.flatten(ak.Array([np.bincount(ak.to_numpy(idx), minlength=n)
                                   for idx, n in zip(raw.JetPFCands_jetIdx, ak.to_numpy(raw.nJet))]), axis=None)
    assert 0 < ak.max(per_jet) <= length  # no truncation: the sums are the whole jet's
    torch.jit.script(_TrackSums().eval()).save(str(tmp_path / "tracks.pt"))
    (tmp_path / "tracks.json").write_text(json.dumps({
        "input_names": ["pf_features", "pf_mask"], "output_names": ["softmax"],
        "pf_features": {"var_names": ["part_d0", "part_dz", "part_mask"], "var_length": length,
                        "var_infos": {"part_mask": {"norm_factor": 0.1}}},
        "pf_mask": {"var_names": ["part_mask"], "var_length": length}, "classes": ["d0", "dz", "n"]}))
    output = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "coffea_lorentz.cli", "run", str(pfnano_ttbar), "--output", str(output),
                           "--collection", "Jet", "--tagger", str(tmp_path / "tracks.pt"), "--backend", "torch",
                           "--workers", "0", "--no-progress", "--chunksize", "50", "--copy-branches", "Jet_*"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted(output.glob("ttbar/*.root"))
    assert len(files) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the chunk files hold Jet only, not the cross-references of a whole NanoAOD
        written = [NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema,
                                               mode="eager").events() for path in files]

    # the reference, jet by jet from the raw branches: sums over each jet's PF candidates
    expected = []
    for idx, cands, d0, dz, n_jets in zip(raw.JetPFCands_jetIdx, raw.JetPFCands_pFCandsIdx, raw.PFCands_d0,
                                          raw.PFCands_dz, ak.to_numpy(raw.nJet)):
        idx, cands = ak.to_numpy(idx), ak.to_numpy(cands)
        d0, dz = ak.to_numpy(d0)[cands], ak.to_numpy(dz)[cands]
        for jet in range(n_jets):
            mine = idx == jet
            logits = np.array([np.tanh(d0[mine]).sum(), np.tanh(dz[mine]).sum(), 0.1 * mine.sum()])
            expected.append(np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum())
    expected = np.array(expected)
    for index, label in enumerate(("d0", "dz", "n")):
        got = ak.concatenate([chunk.Jet[f"tracks_{label}"] for chunk in written])
        assert ak.to_list(ak.num(got, axis=1)) == ak.to_list(raw.nJet)
        np.testing.assert_allclose(ak.to_numpy(ak.flatten(got)), expected[:, index], rtol=1e-5, atol=1e-6)
