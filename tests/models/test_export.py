"""Every registered tagger exports to TorchScript (and to ONNX where its ops allow) and matches eager.

Inputs cover several (B, N), including N = 1 and N = 128, real jets with NaN in the padding.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from coffea_lorentz import models, symmetry
from coffea_lorentz.export import ScoredTagger, export_torchscript, load_torchscript

SHAPES = [(1, 1), (3, 17), (8, 64), (2, 128)]

#: Taggers whose ops have no ONNX export (name → why); every other tagger must export.
NO_ONNX: dict[str, str] = {}


def build_tagger(name: str, **config) -> torch.nn.Module:
    """``models.build`` seeded, in eval mode."""
    torch.manual_seed(0)
    return models.build(name, **config).eval()


def jets(batch_size: int, n_constituents: int) -> tuple[torch.Tensor, torch.Tensor]:
    return symmetry.random_jets(
        batch_size, n_constituents, dtype=torch.float32, pad_value=math.nan, seed=batch_size * 1000 + n_constituents
    )


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")  # TorchScript is what Triton's libtorch backend serves
@pytest.mark.parametrize("beam_reference", [False, True], ids=["no_beam", "beam"])
@pytest.mark.parametrize("name", models.available())
def test_torchscript_matches_eager(name, beam_reference, tmp_path: Path):
    model = build_tagger(name, beam_reference=beam_reference)
    scripted = torch.jit.script(model)  # scripting itself must work: a trace would bake in B and N
    assert isinstance(scripted, torch.jit.RecursiveScriptModule)
    export_torchscript(model, tmp_path / "model.pt")
    loaded = load_torchscript(tmp_path / "model.pt")
    eager = ScoredTagger(model).eval()
    with torch.no_grad():
        for batch_size, n_constituents in SHAPES:
            p4, mask = jets(batch_size, n_constituents)
            expected_logits = model(p4, mask)
            assert torch.isfinite(expected_logits).all()
            assert (scripted(p4, mask) - expected_logits).abs().max() <= 1e-5, (batch_size, n_constituents)
            assert (loaded(p4, mask) - eager(p4, mask)).abs().max() <= 1e-5, (batch_size, n_constituents)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the legacy exporter traces; B and N stay dynamic axes
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch marks the TorchScript-based exporter deprecated
@pytest.mark.parametrize("name", models.available())
def test_onnx_matches_eager(name, tmp_path: Path):
    pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx==1.23.2)")
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime==1.31.1)")
    model = build_tagger(name)
    if name in NO_ONNX:
        pytest.skip(f"{name}: no ONNX export ({NO_ONNX[name]})")
    path = tmp_path / "model.onnx"
    example = jets(3, 17)
    dynamic = {0: "batch", 1: "n_constituents"}
    torch.onnx.export(
        model,
        example,
        str(path),
        input_names=["p4", "mask"],
        output_names=["logits"],
        dynamic_axes={"p4": dynamic, "mask": dynamic, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        for batch_size, n_constituents in SHAPES:
            p4, mask = jets(batch_size, n_constituents)
            (logits,) = session.run(None, {"p4": p4.numpy(), "mask": mask.numpy()})
            difference = symmetry.relative_change(model(p4, mask), torch.from_numpy(logits))
            assert difference <= 1e-5, (
                f"{name}: ONNX differs from eager by {difference:.3g} (relative) at B={batch_size}, N={n_constituents}"
            )
