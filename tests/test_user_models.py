"""Models an analyst brings: a weaver-core style export (``model.onnx`` + ``preprocess.json``,
four channel-first inputs, three classes) and a TorchScript file with a spec, run on the real CMS
``pfnano.root`` through ``Tagger(PATH)`` — eager and dask-awkward — and compared with a reference
computed here independently, jet by jet, from the raw branches with plain uproot, numpy and
onnxruntime / torch."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from coffea_lorentz import Tagger
from coffea_lorentz.errors import ConfigurationError, ModelMismatchError
from coffea_lorentz.testing.models import JetMassModel

onnxruntime = pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime (the test extra)")

PF_FEATURES = ["part_pt_log", "part_e_log", "part_logptrel", "part_logerel", "part_deltaR", "part_charge",
               "part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton", "part_isElectron", "part_isMuon",
               "part_d0", "part_dz", "part_d0err", "part_dzerr", "part_deta", "part_dphi"]
GROUPS = {"pf_points": ["part_deta", "part_dphi"], "pf_features": PF_FEATURES,
          "pf_vectors": ["part_px", "part_py", "part_pz", "part_energy"], "pf_mask": ["part_mask"]}
LENGTH = 24  # smaller than some jets' constituent counts: truncation is exercised
CLASSES = ["QCD", "Hbb", "Hcc"]


class WeaverLike(torch.nn.Module):
    """Order-sensitive (a kernel-3 convolution over the particle axis), uses every input, softmax inside."""

    def __init__(self, n_features: int, n_classes: int = 3):
        super().__init__()
        generator = torch.Generator().manual_seed(5)
        self.conv = torch.nn.Conv1d(2 + n_features + 4, 16, 3, padding=1)
        self.head = torch.nn.Linear(16, n_classes)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)

    def forward(self, pf_points, pf_features, pf_vectors, pf_mask):
        vectors = torch.sign(pf_vectors) * torch.log1p(pf_vectors.abs())
        x = torch.relu(self.conv(torch.cat([pf_points, pf_features, vectors], dim=1))) * pf_mask
        pooled = x.sum(-1) / pf_mask.sum(-1).clamp(min=1)
        return torch.softmax(self.head(pooled), dim=-1)


def preprocess_json() -> dict:
    rng = np.random.default_rng(3)
    out = {"input_names": list(GROUPS), "output_names": ["softmax"]}
    for group, names in GROUPS.items():
        infos = {}
        for name in names:
            if group in ("pf_vectors", "pf_mask"):
                infos[name] = {"median": 0.0, "norm_factor": 1.0, "replace_inf_value": 0.0,
                               "lower_bound": -1e32, "upper_bound": 1e32, "pad": 0.0}
            else:
                infos[name] = {"median": float(rng.normal()), "norm_factor": float(rng.uniform(0.3, 2)),
                               "replace_inf_value": -3.0, "lower_bound": -5.0, "upper_bound": 5.0,
                               "pad": float(rng.choice([0.0, -1.0]))}
        out[group] = {"var_names": list(names), "var_length": LENGTH, "var_infos": infos}
    return out


@pytest.fixture(scope="module")
def weaver_export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("exports") / "my_part"
    folder.mkdir()
    model = WeaverLike(len(PF_FEATURES)).eval()
    example = tuple(torch.rand(2, len(names), 7) for names in GROUPS.values())
    torch.onnx.export(model, example, str(folder / "model.onnx"), input_names=list(GROUPS), output_names=["softmax"],
                      dynamic_axes={**{name: {0: "N", 2: "P"} for name in GROUPS}, "softmax": {0: "N"}},
                      opset_version=15, dynamo=False)
    (folder / "preprocess.json").write_text(json.dumps(preprocess_json()))
    return folder


# ---- the independent reference: raw branches, one jet at a time -------------------------------
def reference_inputs(path: Path) -> list[dict[str, np.ndarray] | None]:
    """For every FatJet of the file in order: the four padded [1, C, LENGTH] inputs, or None without constituents."""
    tree = uproot.open(path)["Events"]
    branches = tree.arrays(["FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass", "FatJetPFCands_jetIdx",
                            "FatJetPFCands_pFCandsIdx", "PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass",
                            "PFCands_charge", "PFCands_pdgId", "PFCands_d0", "PFCands_dz", "PFCands_d0Err",
                            "PFCands_dzErr"], library="np")
    spec = preprocess_json()
    jets = []
    for event in range(len(branches["FatJet_pt"])):
        for jet in range(len(branches["FatJet_pt"][event])):
            jet_pt, jet_eta = float(branches["FatJet_pt"][event][jet]), float(branches["FatJet_eta"][event][jet])
            jet_phi, jet_mass = float(branches["FatJet_phi"][event][jet]), float(branches["FatJet_mass"][event][jet])
            jet_energy = math.sqrt((jet_pt * math.cosh(jet_eta)) ** 2 + jet_mass**2)
            members = branches["FatJetPFCands_pFCandsIdx"][event][branches["FatJetPFCands_jetIdx"][event] == jet]
            rows = []
            for index in members:
                pt, eta = float(branches["PFCands_pt"][event][index]), float(branches["PFCands_eta"][event][index])
                phi, mass = float(branches["PFCands_phi"][event][index]), float(branches["PFCands_mass"][event][index])
                energy = math.sqrt((pt * math.cosh(eta)) ** 2 + mass**2)
                deta = eta - jet_eta
                dphi = (phi - jet_phi + math.pi) % (2 * math.pi) - math.pi
                pdg = abs(int(branches["PFCands_pdgId"][event][index]))
                value = {"part_pt_log": math.log(pt), "part_e_log": math.log(energy),
                         "part_logptrel": math.log(pt / jet_pt), "part_logerel": math.log(energy / jet_energy),
                         "part_deltaR": math.hypot(deta, dphi), "part_deta": deta, "part_dphi": dphi,
                         "part_charge": float(branches["PFCands_charge"][event][index]),
                         "part_isChargedHadron": float(pdg == 211), "part_isNeutralHadron": float(pdg == 130),
                         "part_isPhoton": float(pdg == 22), "part_isElectron": float(pdg == 11),
                         "part_isMuon": float(pdg == 13), "part_d0": math.tanh(branches["PFCands_d0"][event][index]),
                         "part_dz": math.tanh(branches["PFCands_dz"][event][index]),
                         "part_d0err": float(branches["PFCands_d0Err"][event][index]),
                         "part_dzerr": float(branches["PFCands_dzErr"][event][index]),
                         "part_px": pt * math.cos(phi), "part_py": pt * math.sin(phi), "part_pz": pt * math.sinh(eta),
                         "part_energy": energy, "part_mask": 1.0}
                rows.append((pt, value))
            if not rows:
                jets.append(None)
                continue
            rows.sort(key=lambda row: -row[0])
            tensors = {}
            for group, names in GROUPS.items():
                array = np.empty((1, len(names), LENGTH), dtype=np.float32)
                for c, name in enumerate(names):
                    info = spec[group]["var_infos"][name]
                    array[0, c, :] = info["pad"]
                    for p, (_, value) in enumerate(rows[:LENGTH]):
                        x = (value[name] - info["median"]) * info["norm_factor"]
                        x = min(max(x, info["lower_bound"]), info["upper_bound"])
                        array[0, c, p] = x if math.isfinite(x) else info["replace_inf_value"]
                tensors[group] = array
            jets.append(tensors)
    return jets


def test_weaver_export_on_the_cms_file_equals_an_independent_reference(weaver_export, pfnano_file):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    session = onnxruntime.InferenceSession(str(weaver_export / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = np.array([session.run(None, inputs)[0][0] if inputs is not None else [np.nan] * 3
                         for inputs in reference_inputs(pfnano_file)])
    tagger = Tagger(str(weaver_export), backend="onnx", classes=CLASSES, batch_size=7)
    assert tagger.names == tuple(CLASSES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = NanoEventsFactory.from_root({str(pfnano_file): "Events"}, schemaclass=PFNanoAODSchema,
                                             mode="eager").events()
        scores = tagger(events)
    assert set(scores) == set(CLASSES)
    got = np.stack([ak.to_numpy(ak.flatten(scores[name])) for name in CLASSES], axis=1)
    assert got.shape == expected.shape and len(got) == 24
    assert np.isfinite(expected).all(axis=1).sum() > 15
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert ak.to_list(ak.num(scores["Hbb"])) == ak.to_list(ak.num(events.FatJet))

    # dask-awkward: the same numbers, lazily, reading only what the spec needs
    import dask_awkward as dak

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lazy_events = NanoEventsFactory.from_root({str(pfnano_file): "Events"}, schemaclass=PFNanoAODSchema,
                                                  mode="dask").events()
        lazy = tagger(lazy_events)
        columns = dak.report_necessary_columns(lazy["QCD"])
        computed = {name: array.compute(scheduler="sync") for name, array in lazy.items()}
    needed = set(next(iter(columns.values())))
    assert "PFCands_d0" in needed and "FatJet_mass" in needed and "PFCands_puppiWeight" not in needed
    for name in CLASSES:
        np.testing.assert_array_equal(ak.to_numpy(ak.flatten(computed[name])), ak.to_numpy(ak.flatten(scores[name])))


def test_torchscript_with_a_spec_and_variable_length_equals_onnx(weaver_export, pfnano_file, tmp_path):
    """The same network as TorchScript beside a spec in the project's own format; with a fixed
    length it equals the ONNX export; with {min, max} lengths each batch is padded to its own
    longest jet and — the network being masked — the scores do not change."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    from coffea_lorentz.modelspec import ModelSpec

    scripted = torch.jit.script(WeaverLike(len(PF_FEATURES)).eval())
    path = tmp_path / "tagger.pt"
    scripted.save(str(path))
    spec = ModelSpec.from_json(preprocess_json()).with_classes(CLASSES)
    (tmp_path / "tagger.json").write_text(json.dumps(spec.to_json()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = NanoEventsFactory.from_root({str(pfnano_file): "Events"}, schemaclass=PFNanoAODSchema,
                                             mode="eager").events()
    onnx_scores = Tagger(str(weaver_export), classes=CLASSES)(events)
    torch_scores = Tagger(str(path))(events)
    for name in CLASSES:
        np.testing.assert_allclose(ak.to_numpy(ak.flatten(torch_scores[name])),
                                   ak.to_numpy(ak.flatten(onnx_scores[name])), atol=1e-5)
    data = spec.to_json()
    for item in data["inputs"]:
        item["length"] = {"min": 1, "max": 200}
        for variable in item["variables"]:
            variable["pad"] = 0.0  # what a masked network ignores
    (tmp_path / "tagger.json").write_text(json.dumps(data))
    fixed = spec.to_json()
    for item in fixed["inputs"]:
        item["length"] = 200
        for variable in item["variables"]:
            variable["pad"] = 0.0
    (tmp_path / "fixed.json").write_text(json.dumps(fixed))
    dynamic = Tagger(str(path), batch_size=4)(events)
    reference = Tagger(str(path), spec=tmp_path / "fixed.json")(events)
    for name in CLASSES:
        np.testing.assert_allclose(ak.to_numpy(ak.flatten(dynamic[name])), ak.to_numpy(ak.flatten(reference[name])),
                                   atol=1e-5)


def test_mismatches_stop_before_any_event_with_one_line(weaver_export, tmp_path):
    data = preprocess_json()
    data["pf_features"]["var_names"][0] = "part_pt_lg"
    (tmp_path / "bad_variable.json").write_text(json.dumps(data))
    with pytest.raises(ConfigurationError, match=r"input 'pf_features': unknown variable 'part_pt_lg'; closest known: "
                                                 r"part_pt_log"):
        Tagger(str(weaver_export / "model.onnx"), spec=tmp_path / "bad_variable.json")
    data = preprocess_json()
    data["pf_features"]["var_names"] = data["pf_features"]["var_names"][:-1]
    (tmp_path / "fewer.json").write_text(json.dumps(data))
    # the exported model has a dynamic particle axis but a fixed channel count
    with pytest.raises(ModelMismatchError, match=r"input 'pf_features' axis 1 is 17 in the model, 16 in the spec"):
        Tagger(str(weaver_export / "model.onnx"), spec=tmp_path / "fewer.json")
    data = preprocess_json()
    data["input_names"][3] = "pf_msk"
    data["pf_msk"] = data.pop("pf_mask")
    (tmp_path / "renamed.json").write_text(json.dumps(data))
    with pytest.raises(ModelMismatchError, match=r"not in the model: pf_msk.*not in the spec: pf_mask"):
        Tagger(str(weaver_export / "model.onnx"), spec=tmp_path / "renamed.json")
    with pytest.raises(ModelMismatchError, match="3 outputs, but the spec names 2 classes"):
        Tagger(str(weaver_export), classes=["a", "b"])
    torn = tmp_path / "torn"
    torn.mkdir()
    (torn / "model.onnx").write_bytes((weaver_export / "model.onnx").read_bytes()[:5000])
    (torn / "preprocess.json").write_text(json.dumps(preprocess_json()))
    with pytest.raises(ConfigurationError, match=r"torn/model.onnx: ONNX Runtime cannot load it \(") as caught:
        Tagger(str(torn))
    assert "\n" not in str(caught.value)


def test_secondary_vertices_and_ak4_jets(pfnano_file, tmp_path):
    """An SV input (FatJetSVs → SV, empty slots skipped) and the AK4 collection: features equal
    the raw branches; a jet without SVs has all pads."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    from coffea_lorentz.features import read_objects

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = NanoEventsFactory.from_root({str(pfnano_file): "Events"}, schemaclass=PFNanoAODSchema,
                                             mode="eager").events()
    vertices = read_objects(events, "FatJet", "SV", ["sv_pt", "sv_ntracks", "sv_d3dsig"])
    tree = uproot.open(pfnano_file)["Events"]
    raw = tree.arrays(["FatJetSVs_jetIdx", "FatJetSVs_sVIdx", "SV_pt", "nFatJet"], library="np")
    expected_counts, expected_pt = [], []
    for event in range(len(raw["nFatJet"])):
        for jet in range(raw["nFatJet"][event]):
            index = raw["FatJetSVs_sVIdx"][event][(raw["FatJetSVs_jetIdx"][event] == jet)]
            pts = sorted((float(raw["SV_pt"][event][i]) for i in index if i >= 0), reverse=True)
            expected_counts.append(len(pts))
            expected_pt.extend(pts)
    assert vertices.n_per_jet.tolist() == expected_counts
    np.testing.assert_allclose(vertices.variable("sv_pt"), expected_pt, rtol=1e-6)
    ak4 = read_objects(events, "Jet", "PFCands", ["part_pt", "part_deta"])
    assert ak4.n_per_jet.size == int(ak.sum(ak.num(events.Jet))) and ak4.n_objects > 0
    assert np.all(np.abs(ak4.variable("part_deta")) < 0.6)


def _reference_scores(weaver_export: Path, pfnano_file: Path) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(weaver_export / "model.onnx"), providers=["CPUExecutionProvider"])
    return np.array([session.run(None, inputs)[0][0] if inputs is not None else [np.nan] * 3
                     for inputs in reference_inputs(pfnano_file)])


@pytest.mark.slow
def test_run_writes_per_class_branches_beside_a_served_tagger_and_resumes(weaver_export, pfnano_file, tmp_path):
    """``coffea-lorentz run --tagger lloca --tagger DIR --classes ...`` in the default mode (the run
    starts its own Triton server, which serves LLoCa and the weaver model — ONNX Runtime in the
    python backend) on a real Dask LocalCluster: the weaver model's per-class branches equal the
    independent reference, NanoEvents reads them back, LLoCa's score is there too; the server's
    statistics show the weaver model's requests; the same command again skips the chunks; a spec
    that does not fit the model stops the run before the output folder exists."""
    import subprocess
    import sys

    from coffea.nanoevents import NanoEventsFactory, NanoAODSchema

    from coffea_lorentz.testing import server_unavailable_reason

    if server_unavailable_reason() is not None:
        pytest.skip(f"no local Triton server: {server_unavailable_reason()}")
    output = tmp_path / "out"
    command = [sys.executable, "-m", "coffea_lorentz.cli", "run", str(pfnano_file), "--output", str(output),
               "--tagger", "lloca", "--tagger", f"weaver={weaver_export}", "--classes", ",".join(CLASSES),
               "--workers", "2", "--chunksize", "4", "--no-progress", "--copy-branches", "FatJet_*"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "weaver: 3 requests (0 failed), 24 jets" in " ".join(first.stdout.split()), first.stdout
    files = sorted(output.glob("pfnano/*.root"))
    assert len(files) == 3
    arrays = [uproot.open(path)["Events"].arrays(library="ak") for path in files]
    got = np.stack([np.concatenate([ak.to_numpy(ak.flatten(a[f"FatJet_weaver_{name}"])) for a in arrays])
                    for name in CLASSES], axis=1)
    np.testing.assert_allclose(got, _reference_scores(weaver_export, pfnano_file), atol=1e-5, rtol=0)
    assert all("FatJet_lloca_score" in a.fields for a in arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = NanoEventsFactory.from_root({str(files[0]): "Events"}, schemaclass=NanoAODSchema,
                                             mode="eager").events()
    assert {f"weaver_{name}" for name in CLASSES} <= set(events.FatJet.fields)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(events.FatJet.weaver_Hbb)),
                               ak.to_numpy(ak.flatten(arrays[0]["FatJet_weaver_Hbb"])))
    settings = json.loads((output / "run.json").read_text())
    assert settings["models"] == {"weaver": CLASSES} and "weaver" in settings["model_sha256"]

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 processed, 3 skipped" in again.stdout, again.stdout + again.stderr

    data = preprocess_json()
    data["pf_points"]["var_names"] = ["part_deta", "part_dphi", "part_deltaR"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.onnx").write_bytes((weaver_export / "model.onnx").read_bytes())
    (bad / "preprocess.json").write_text(json.dumps(data))
    refused = subprocess.run([*command[:5], "--output", str(tmp_path / "never"), "--tagger", str(bad),
                              "--backend", "onnx", "--workers", "0", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    message = (refused.stdout + refused.stderr).strip().splitlines()
    assert len(message) == 1 and "input 'pf_points' axis 1 is 2 in the model, 3 in the spec" in message[0], message
    assert not (tmp_path / "never").exists()



def test_check_reports_the_zoo_and_models_you_bring(weaver_export, tmp_path):
    import subprocess
    import sys

    from coffea_lorentz.check import check_model

    rows = {row.check.split(" ")[0]: row for row in check_model("lloca", n_jets=8)}
    assert rows["Lorentz"].invariant and rows["Lorentz"].dtype == "float64" and rows["Lorentz"].residual < 1e-9
    baseline = {row.check.split(" ")[0]: row for row in check_model("baseline", n_jets=8)}
    assert not baseline["Lorentz"].invariant and baseline["Lorentz"].residual > 1e-3
    assert baseline["constituent"].invariant

    weaver = {row.check.split(" ")[0]: row for row in check_model(str(weaver_export), n_jets=8)}
    assert not weaver["Lorentz"].invariant and weaver["Lorentz"].dtype == "float32"
    assert weaver["batch"].invariant and weaver["constituent"].invariant

    folder = tmp_path / "mass"
    folder.mkdir()
    torch.onnx.export(JetMassModel().eval(), (torch.rand(2, 4, 5), torch.ones(2, 1, 5)), str(folder / "model.onnx"),
                      input_names=["pf_vectors", "pf_mask"], output_names=["softmax"], opset_version=15, dynamo=False,
                      dynamic_axes={"pf_vectors": {0: "B", 2: "P"}, "pf_mask": {0: "B", 2: "P"}, "softmax": {0: "B"}})
    (folder / "preprocess.json").write_text(json.dumps({
        "input_names": ["pf_vectors", "pf_mask"], "output_names": ["softmax"],
        "pf_vectors": {"var_names": ["part_px", "part_py", "part_pz", "part_energy"], "var_length": 40},
        "pf_mask": {"var_names": ["part_mask"], "var_length": 40}}))
    mass = {row.check.split(" ")[0]: row for row in check_model(str(folder), n_jets=8)}
    assert all(row.invariant for row in mass.values()), mass
    printed = subprocess.run([sys.executable, "-m", "coffea_lorentz.cli", "check", str(folder), "--jets", "4"],
                             capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0 and printed.stdout.startswith(f"{folder}: Lorentz-invariant"), printed.stderr


@pytest.mark.slow
def test_a_model_on_a_separately_started_server_through_server_and_spec(weaver_export, pfnano_file, tmp_path):
    """``coffea-lorentz serve --tagger weaver=DIR --tagger ts=FILE.pt`` (a real server started
    apart), then ``run --server URL --tagger weaver --spec preprocess.json``: the branches equal the
    independent reference; the TorchScript model with its spec, served by TorchScript in the python
    backend, gives the same; ``--tagger DIR --server`` checks that the server's model is that file;
    a spec whose inputs differ from the served ones, a variable length where the server takes a
    fixed one, and a file that is not the served model each stop the run with one line before the
    output folder exists."""
    import signal
    import subprocess
    import sys

    from coffea_lorentz.serve import free_port
    from coffea_lorentz.testing import server_unavailable_reason

    if server_unavailable_reason() is not None:
        pytest.skip(f"no local Triton server: {server_unavailable_reason()}")
    scripted = torch.jit.script(WeaverLike(len(PF_FEATURES)).eval())
    scripted.save(str(tmp_path / "ts.pt"))
    (tmp_path / "ts.json").write_text(json.dumps(preprocess_json()))
    grpc, http, metrics = free_port(), free_port(), free_port()
    cli = [sys.executable, "-m", "coffea_lorentz.cli"]
    server = subprocess.Popen([*cli, "serve", "--tagger", f"weaver={weaver_export}", "--tagger", str(tmp_path / "ts.pt"),
                               "--output", str(tmp_path / "repository"), "--grpc-port", str(grpc), "--http-port",
                               str(http), "--metrics-port", str(metrics)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in server.stdout:
            if line.startswith("Ctrl-C to stop"):
                break
        else:
            pytest.fail("coffea-lorentz serve ended before it was ready")
        url = f"grpc://127.0.0.1:{grpc}"
        reference = _reference_scores(weaver_export, pfnano_file)
        base = [*cli, "run", str(pfnano_file), "--server", url, "--workers", "0", "--no-progress",
                "--classes", ",".join(CLASSES)]
        for name, extra in (("weaver", ["--tagger", "weaver", "--spec", str(weaver_export / "preprocess.json")]),
                            ("ts", ["--tagger", "ts", "--spec", f"ts={tmp_path / 'ts.json'}"]),
                            ("weaver", ["--tagger", f"weaver={weaver_export}"])):
            output = tmp_path / f"out-{name}-{len(extra)}"
            done = subprocess.run([*base, "--output", str(output), *extra], capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            arrays = [uproot.open(path)["Events"].arrays(library="ak") for path in sorted(output.glob("pfnano/*.root"))]
            got = np.stack([np.concatenate([ak.to_numpy(ak.flatten(a[f"FatJet_{name}_{label}"])) for a in arrays])
                            for label in CLASSES], axis=1)
            np.testing.assert_allclose(got, reference, atol=1e-5, rtol=0)

        wrong_inputs = preprocess_json()
        wrong_inputs["pf_points"]["var_names"] = ["part_deta", "part_dphi", "part_deltaR"]
        variable = preprocess_json()
        for group in variable["input_names"]:
            variable[group].update(min_length=1, max_length=64)
        (tmp_path / "wrong.json").write_text(json.dumps(wrong_inputs))
        (tmp_path / "variable.json").write_text(json.dumps(variable))
        cases = {"wrong.json": "input 'pf_points' is FP32 [-1, 2, 24], expected FP32 [-1, 3, 24]",
                 "variable.json": "input 'pf_points' takes exactly 24 objects on axis 2",
                 "other": "the server serves another model under that name"}
        for case, expected in cases.items():
            given = ["--tagger", f"weaver={tmp_path / 'ts.pt'}"] if case == "other" else \
                ["--tagger", "weaver", "--spec", str(tmp_path / case)]
            refused = subprocess.run([*base, "--output", str(tmp_path / "never"), *given], capture_output=True,
                                     text=True, timeout=300)
            lines = (refused.stdout + refused.stderr).strip().splitlines()
            assert refused.returncode == 1 and len(lines) == 1 and expected in lines[0], (case, lines)
            assert not (tmp_path / "never").exists()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


def test_repositories_for_an_ngc_server_parse_with_tritons_model_config(weaver_export, tmp_path):
    """``serve --build-only --backend pytorch_libtorch`` with models you bring: ONNX as
    ``onnxruntime_onnx`` (model.onnx), TorchScript as ``pytorch_libtorch`` (model.pt), each config
    accepted by Triton's own ``ModelConfig`` schema with the spec's inputs and output; the bundled
    server's python-backend configs carry the same tensors beside ``spec_model.py``."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from coffea_lorentz.repository import build_repository, python_backend_source
    from coffea_lorentz.user_model import load_model

    scripted = torch.jit.script(WeaverLike(len(PF_FEATURES)).eval())
    scripted.save(str(tmp_path / "ts.pt"))
    (tmp_path / "ts.json").write_text(json.dumps(preprocess_json()))
    models = {"weaver": load_model(weaver_export), "ts": load_model(tmp_path / "ts.pt")}
    for backend, platforms in (("pytorch_libtorch", {"weaver": "onnxruntime_onnx", "ts": "pytorch_libtorch"}),
                               ("python", {"weaver": "", "ts": ""})):
        repository = build_repository(tmp_path / backend, models, backend=backend)
        for name, platform in platforms.items():
            config = text_format.Parse((repository / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
            assert config.platform == platform and config.backend == ("python" if backend == "python" else "")
            assert [(i.name, list(i.dims)) for i in config.input] == [
                (group, [len(names), LENGTH]) for group, names in GROUPS.items()]
            assert [(o.name, list(o.dims)) for o in config.output] == [("softmax", [3])]
            assert config.parameters["model_sha256"].string_value == models[name].identity
            files = sorted(path.name for path in (repository / name / "1").iterdir())
            expected = {"weaver": "model.onnx", "ts": "model.pt"}[name]
            assert files == ([expected, "model.py"] if backend == "python" else [expected]), files
        if backend == "python":
            assert (repository / "ts" / "1" / "model.py").read_text() == python_backend_source("spec_model.py").read_text()
