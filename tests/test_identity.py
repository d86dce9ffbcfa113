"""A model's identity (``coffea_lorentz.identity``) is what determines its outputs, not the bytes
of a serialized file: the same tagger built in two fresh processes with different hash seeds and
histories gets one identity, while its ``model.pt`` bytes may differ; any change of weights,
config or class changes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from coffea_lorentz.identity import file_identity, model_identity
from coffea_lorentz.models import build, pretrained
from coffea_lorentz.run.preflight import torch_hashes

BUILD = """
import json, sys
from coffea_lorentz.models import build, pretrained
from coffea_lorentz.repository import build_repository
if sys.argv[2] == "history":  # another process history: other modules, other objects first
    import coffea_lorentz.train, coffea_lorentz.reweight
    _ = [pretrained(name) for name in ("pelican", "lorentznet")]
path = build_repository(sys.argv[1], {"lloca": pretrained("lloca"), "reweight_fsr": pretrained("reweight_fsr")})
print(json.dumps({name: entry["sha256"] for name, entry in json.loads((path / "repository.json").read_text())["models"].items()}))
"""


def test_the_same_tagger_has_one_identity_in_fresh_processes(tmp_path):
    hashes, model_bytes = [], []
    for index, (seed, history) in enumerate([("1", "plain"), ("97", "history"), ("random", "plain")]):
        environment = dict(os.environ, PYTHONHASHSEED=seed)
        if seed == "random":
            environment.pop("PYTHONHASHSEED")
        done = subprocess.run([sys.executable, "-c", BUILD, str(tmp_path / f"repo{index}"), history],
                              env=environment, capture_output=True, text=True, timeout=600, check=True)
        hashes.append(json.loads(done.stdout.strip().splitlines()[-1]))
        model_bytes.append((tmp_path / f"repo{index}" / "lloca" / "1" / "model.pt").read_bytes())
    assert hashes[0] == hashes[1] == hashes[2]
    # the in-process backend names the same model the same way
    assert torch_hashes(["lloca"])["lloca"] == hashes[0]["lloca"]
    config = (tmp_path / "repo0" / "lloca" / "config.pbtxt").read_text()
    assert hashes[0]["lloca"] in config


def test_any_change_that_changes_outputs_changes_the_identity(tmp_path):
    model = pretrained("lloca")
    reference = model_identity(model)
    assert model_identity(pretrained("lloca")) == reference
    assert model_identity(model, extra={"head": "softmax"}) != reference
    changed = pretrained("lloca")
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1e-6
    assert model_identity(changed) != reference
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        compact = model_identity(build("lorentz_efn"))
        torch.manual_seed(0)
        large = model_identity(build("lorentz_efn", size="large"))
    assert compact != large
    assert model_identity(pretrained("identity")) != model_identity(pretrained("lorentznet"))
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07abc")
    assert file_identity(path) == file_identity(path)
    assert file_identity(path) != file_identity(path, extra={"spec": 1})
