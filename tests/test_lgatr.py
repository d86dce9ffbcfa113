"""The official ``lgatr`` package as a model you bring: a small ``LGATrSlim`` on the constituents'
four-vectors (E, px, py, pz) with PID scalars, pooled to class probabilities from its scalar
outputs only (a Lorentz-invariant readout), exported to TorchScript with a spec beside it, run
end to end through ``Tagger(PATH)`` and ``coffea-lorentz run`` on the real CMS ``pfnano.root``,
and reported Lorentz-invariant by ``coffea-lorentz check``.

Padded constituents are kept out of LGATr's attention by a boolean mask ``[B, 1, 1, P]`` (LGATr's
native backend is torch's ``scaled_dot_product_attention``, which takes ``attn_mask``) and out of
the pooling by the mask weights; every other LGATr layer acts on each constituent alone.

Export: ``torch.jit.script`` refuses LGATr's ``forward(..., **attn_kwargs)`` (TorchScript takes no
variable keyword arguments), so the module is traced (LGATr has no data-dependent control flow; B
and P stay dynamic, checked below). The ONNX exporter of this torch (TorchScript-based; the dynamo
exporter needs ``onnxscript``) writes LGATr's ``movedim`` with negative dimensions as a
``Transpose`` whose ``perm`` ONNX Runtime rejects, so there is no ONNX path: ``--backend onnx`` is
refused with one line.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

lgatr = pytest.importorskip("lgatr", reason="the lgatr tests need the lgatr package (the test extra)")

from coffea_lorentz import Tagger  # noqa: E402
from coffea_lorentz.check import check_model  # noqa: E402

VECTORS = ["part_energy", "part_px", "part_py", "part_pz"]
SCALARS = ["part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton", "part_isElectron", "part_isMuon",
           "part_charge"]
UNIT_GEV = 100.0  # the spec's norm_factor 1/UNIT_GEV on each component: a scale, which commutes with boosts
MAX_CONSTITUENTS = 32  # fewer than some FatJets of pfnano.root hold: truncation is exercised
CLASSES = ["QCD", "top"]


class LGATrJetTagger(torch.nn.Module):
    """``pf_vectors`` [B, P, 4] (E, px, py, pz in units of 100 GeV), ``pf_features`` [B, P, 6] PID
    scalars, ``pf_mask`` [B, P, 1] (1 = real) → softmax probabilities [B, 2] from the masked mean of
    LGATrSlim's scalar outputs. ``masked=False`` lets attention see the padded constituents."""

    def __init__(self, *, masked: bool = True):
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(7)
        self.net = lgatr.LGATrSlim(num_blocks=2, in_v_channels=1, out_v_channels=1, hidden_v_channels=4,
                                   in_s_channels=len(SCALARS), out_s_channels=8, hidden_s_channels=8, num_heads=2)
        self.head = torch.nn.Linear(8, len(CLASSES))
        torch.random.set_rng_state(generator_state)
        self.masked = masked

    def forward(self, pf_vectors: torch.Tensor, pf_features: torch.Tensor, pf_mask: torch.Tensor) -> torch.Tensor:
        keep = pf_mask[:, :, 0] > 0.5
        if self.masked:
            _, scalars = self.net(pf_vectors.unsqueeze(-2), pf_features, attn_mask=keep[:, None, None, :])
        else:
            _, scalars = self.net(pf_vectors.unsqueeze(-2), pf_features)
        pooled = (scalars * pf_mask).sum(1) / pf_mask.sum(1).clamp(min=1.0)
        return torch.softmax(self.head(pooled), dim=-1)


def spec_json() -> dict:
    length = {"min": 1, "max": MAX_CONSTITUENTS}
    return {"format": "coffea-lorentz-model-spec/1", "outputs": ["softmax"], "classes": CLASSES,
            "inputs": [{"name": "pf_vectors", "layout": "particles_first", "length": length,
                        "variables": [{"name": name, "norm_factor": 1 / UNIT_GEV} for name in VECTORS]},
                       {"name": "pf_features", "layout": "particles_first", "length": length,
                        "variables": [{"name": name} for name in SCALARS]},
                       {"name": "pf_mask", "layout": "particles_first", "length": length,
                        "variables": [{"name": "part_mask"}]}]}


def _example(batch_size: int, length: int, seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    momentum = torch.randn(batch_size, length, 3, generator=generator)
    vectors = torch.cat([momentum.norm(dim=-1, keepdim=True) + 0.01, momentum], dim=-1)
    features = (torch.rand(batch_size, length, len(SCALARS), generator=generator) > 0.5).float()
    lengths = torch.randint(1, length + 1, (batch_size, 1), generator=generator)
    mask = (torch.arange(length)[None, :] < lengths).float().unsqueeze(-1)
    return vectors * mask, features * mask, mask


def export(module: LGATrJetTagger, path: Path) -> None:
    """Trace ``module`` to TorchScript at ``path``, its spec at ``path.with_suffix('.json')``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module.eval(), _example(3, 7, seed=1), check_trace=False)
    traced.save(str(path))
    path.with_suffix(".json").write_text(json.dumps(spec_json()))


@pytest.fixture(scope="module")
def lgatr_model(tmp_path_factory) -> tuple[LGATrJetTagger, Path]:
    module = LGATrJetTagger().eval()
    path = tmp_path_factory.mktemp("lgatr") / "lgatr.pt"
    export(module, path)
    return module, path


def reference_scores(module: LGATrJetTagger, path: Path) -> np.ndarray:
    """Per FatJet in file order: the eager (not exported) module on the jet's own leading-pT
    constituents, unpadded, from the raw branches; NaN for a jet without constituents."""
    raw = uproot.open(path)["Events"].arrays(["nFatJet", "FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx",
                                              "PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass",
                                              "PFCands_pdgId", "PFCands_charge"], library="np")
    scores = []
    for event in range(len(raw["nFatJet"])):
        for jet in range(raw["nFatJet"][event]):
            index = raw["FatJetPFCands_pFCandsIdx"][event][raw["FatJetPFCands_jetIdx"][event] == jet]
            if len(index) == 0:
                scores.append([math.nan] * len(CLASSES))
                continue
            pt = raw["PFCands_pt"][event][index].astype(np.float64)
            order = np.argsort(-pt, kind="stable")[:MAX_CONSTITUENTS]
            index, pt = index[order], pt[order]
            eta, phi = raw["PFCands_eta"][event][index], raw["PFCands_phi"][event][index]
            mass = raw["PFCands_mass"][event][index].astype(np.float64)
            px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
            energy = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
            vectors = np.stack([energy, px, py, pz], axis=-1) / UNIT_GEV
            pdg = np.abs(raw["PFCands_pdgId"][event][index])
            features = np.stack([pdg == 211, pdg == 130, pdg == 22, pdg == 11, pdg == 13,
                                 raw["PFCands_charge"][event][index]], axis=-1)
            with torch.no_grad():
                probabilities = module(torch.tensor(vectors[None], dtype=torch.float32),
                                       torch.tensor(features[None], dtype=torch.float32),
                                       torch.ones(1, len(index), 1))
            scores.append(probabilities[0].tolist())
    return np.array(scores)


def test_the_traced_export_keeps_batch_and_length_dynamic(lgatr_model):
    module, path = lgatr_model
    traced = torch.jit.load(str(path))
    with torch.no_grad():
        for batch_size, length in ((1, 1), (2, 13), (5, 40)):
            inputs = _example(batch_size, length, seed=batch_size)
            np.testing.assert_allclose(traced(*inputs).numpy(), module(*inputs).numpy(), atol=1e-6, rtol=0)


def test_lgatr_on_the_cms_file_through_tagger_and_run(lgatr_model, pfnano_file, tmp_path):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    module, path = lgatr_model
    expected = reference_scores(module, pfnano_file)
    assert expected.shape == (24, 2) and np.isfinite(expected).all(axis=1).sum() > 15
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = NanoEventsFactory.from_root({str(pfnano_file): "Events"}, schemaclass=PFNanoAODSchema,
                                             mode="eager").events()
    tagger = Tagger(str(path), batch_size=5)  # padded batches of 5 jets against each jet alone: masking holds
    assert tagger.names == tuple(CLASSES) and tagger.backend == "torch"
    scores = tagger(events)
    got = np.stack([ak.to_numpy(ak.flatten(scores[name])) for name in CLASSES], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)

    command = [sys.executable, "-m", "coffea_lorentz.cli", "run", str(pfnano_file), "--tagger", str(path),
               "--workers", "0", "--chunksize", "4", "--no-progress"]
    done = subprocess.run([*command, "--output", str(tmp_path / "out"), "--backend", "torch"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    arrays = [uproot.open(file)["Events"].arrays(library="ak") for file in sorted((tmp_path / "out").glob("pfnano/*.root"))]
    written = np.stack([np.concatenate([ak.to_numpy(ak.flatten(a[f"FatJet_lgatr_{name}"])) for a in arrays])
                        for name in CLASSES], axis=1)
    np.testing.assert_allclose(written, expected, atol=1e-5, rtol=0)

    refused = subprocess.run([*command, "--output", str(tmp_path / "never"), "--backend", "onnx"],
                             capture_output=True, text=True, timeout=300)
    lines = (refused.stdout + refused.stderr).strip().splitlines()
    assert refused.returncode == 1 and len(lines) == 1 and "backend 'onnx' needs an .onnx file" in lines[0], lines
    assert not (tmp_path / "never").exists()


def test_check_reports_lgatr_lorentz_invariant_and_masking_matters(lgatr_model, tmp_path):
    _, path = lgatr_model
    rows = {row.check.split(" ")[0]: row for row in check_model(str(path), n_jets=8)}
    assert rows["Lorentz"].dtype == "float32" and rows["Lorentz"].invariant, rows["Lorentz"]
    assert all(row.invariant for row in rows.values()), rows
    printed = subprocess.run([sys.executable, "-m", "coffea_lorentz.cli", "check", str(path), "--jets", "4"],
                             capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0 and printed.stdout.startswith(f"{path}: Lorentz-invariant"), printed.stderr

    # without the attention mask the padded constituents change the outputs: the check sees it
    unmasked = tmp_path / "unmasked.pt"
    export(LGATrJetTagger(masked=False), unmasked)
    rows = {row.check.split(" ")[0]: row for row in check_model(str(unmasked), n_jets=8)}
    assert not rows["padding"].invariant and rows["Lorentz"].invariant, rows


@pytest.mark.slow
def test_lgatr_on_the_runs_own_triton_server(lgatr_model, pfnano_file, tmp_path):
    """The default mode: the run's local Triton server builds the traced LGATr in (TorchScript in
    its python backend); the branches equal the eager reference."""
    from coffea_lorentz.testing import server_unavailable_reason

    if server_unavailable_reason() is not None:
        pytest.skip(f"no local Triton server: {server_unavailable_reason()}")
    module, path = lgatr_model
    done = subprocess.run([sys.executable, "-m", "coffea_lorentz.cli", "run", str(pfnano_file), "--tagger",
                           f"my_lgatr={path}", "--output", str(tmp_path / "out"), "--workers", "0", "--chunksize", "4",
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "my_lgatr: 3 requests (0 failed), 24 jets" in " ".join(done.stdout.split()), done.stdout
    arrays = [uproot.open(file)["Events"].arrays(library="ak") for file in sorted((tmp_path / "out").glob("pfnano/*.root"))]
    written = np.stack([np.concatenate([ak.to_numpy(ak.flatten(a[f"FatJet_my_lgatr_{name}"])) for a in arrays])
                        for name in CLASSES], axis=1)
    np.testing.assert_allclose(written, reference_scores(module, pfnano_file), atol=1e-5, rtol=0)
