"""A ``coffea-lorentz train`` output folder as a model you bring.

``coffea-lorentz train --output FOLDER`` writes ``FOLDER/<tagger>.pt`` (``{"state_dict", "config",
"train_config"}``, :func:`coffea_lorentz.train.save_checkpoint`) and ``FOLDER/metrics.json``
(``"tagger"`` names the checkpoint). :func:`trained_model` gives what such a folder is as a
:class:`~coffea_lorentz.user_model.SpecModel` that scores jets exactly as the zoo tagger it was
trained as:

- inputs ``p4`` float32 [B, P, 4] (``part_energy, part_px, part_py, part_pz``, GeV) and ``mask``
  float32 [B, P, 1] (``part_mask``, 1 = real constituent), the leading-pT constituents kept up to
  the ``max_constituents`` it was trained with, each batch padded to its longest jet;
- output ``score`` float32 [B, 1]: the softmax probability of class 1 (top), written as
  ``<Collection>_<name>_score`` like a zoo tagger's.

The network (:class:`TrainedScore`) is exported once to TorchScript (``model.pt``, what
``--backend torch`` and the bundled Triton server run) and, where ONNX Runtime is installed, to
ONNX (``model.onnx``, ``--backend onnx``), each checked against the eager network, into
``<cache>/trained/<identity>/`` (:func:`cache_root`). The model's identity is
:func:`coffea_lorentz.identity.model_identity` of the rebuilt tagger with its head and spec: the
same in every process and machine, whatever bytes an export happens to have.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from .errors import ConfigurationError
from .modelspec import SPEC_FORMAT, ModelSpec

__all__ = ["TrainedScore", "train_checkpoint", "trained_spec", "trained_model", "cache_root", "HEAD"]

#: What the head does to the tagger's logits; part of the identity.
HEAD = "softmax, class 1 as score"
#: The four-vector variables, in the order a tagger takes them (E, px, py, pz).
P4_VARIABLES = ("part_energy", "part_px", "part_py", "part_pz")


class TrainedScore(nn.Module):
    """A tagger behind the spec's tensors: ``p4`` float32 [B, P, 4] (E, px, py, pz) GeV and
    ``mask`` float32 [B, P, 1] (1 = real) → float32 [B, 1], the probability of class 1."""

    def __init__(self, tagger: nn.Module):
        super().__init__()
        self.tagger = tagger

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[:, :, 0] > 0.5
        return torch.softmax(self.tagger(p4, keep), dim=-1)[:, 1:2]  # class 1 (top)


def train_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint of a ``coffea-lorentz train`` output ``folder`` (``metrics.json`` naming
    ``<tagger>.pt`` beside it), or None when ``folder`` is not one."""
    folder = Path(folder)
    metrics = folder / "metrics.json"
    if not metrics.is_file():
        return None
    try:
        tagger = json.loads(metrics.read_text()).get("tagger")
    except (json.JSONDecodeError, AttributeError):
        return None
    if not isinstance(tagger, str) or not (folder / f"{tagger}.pt").is_file():
        return None
    return folder / f"{tagger}.pt"


def trained_spec(max_constituents: int) -> ModelSpec:
    """The spec of a trained tagger keeping ``max_constituents`` leading-pT constituents."""
    length = {"min": 1, "max": int(max_constituents)}
    return ModelSpec.from_json({
        "format": SPEC_FORMAT,
        "inputs": [{"name": "p4", "layout": "particles_first", "length": length,
                    "variables": [{"name": name} for name in P4_VARIABLES]},
                   {"name": "mask", "layout": "particles_first", "length": length,
                    "variables": [{"name": "part_mask"}]}],
        "outputs": ["score"], "classes": ["score"]}, source="<coffea-lorentz train checkpoint>")


def cache_root() -> Path:
    """Where exports are kept: ``$COFFEA_LORENTZ_CACHE``, else ``$XDG_CACHE_HOME/coffea-lorentz``,
    else ``~/.cache/coffea-lorentz``."""
    given = os.environ.get("COFFEA_LORENTZ_CACHE")
    if given:
        return Path(given).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "coffea-lorentz"


def _load_tagger(checkpoint: Path) -> tuple[nn.Module, int, str]:
    """The tagger rebuilt from ``checkpoint`` (eval mode), its ``max_constituents`` and registry name."""
    from .errors import CoffeaLorentzError
    from .models import pretrained

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises several types for a torn or foreign file
        raise ConfigurationError(f"{checkpoint}: not a coffea-lorentz train checkpoint ({str(err)[:200]})") from None
    if not isinstance(state, dict) or not {"state_dict", "config", "train_config"} <= set(state):
        raise ConfigurationError(f"{checkpoint}: not a coffea-lorentz train checkpoint (expected the keys state_dict, "
                                 "config, train_config)")
    train_config = state["train_config"]
    name = str(train_config.get("tagger", ""))
    try:
        tagger = pretrained(name, weights=checkpoint)
    except CoffeaLorentzError as err:
        raise ConfigurationError(f"{checkpoint}: cannot rebuild tagger {name!r} from it ({err})") from None
    return tagger.eval(), int(train_config.get("max_constituents", 128)), name


def _example(batch_size: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    from .export import _example_inputs

    p4, mask = _example_inputs(batch_size, length, torch.float32)
    return p4 * mask.unsqueeze(-1), mask.to(torch.float32).unsqueeze(-1)


def _check_parity(eager: nn.Module, exported, what: str, atol: float = 1e-5) -> None:
    with torch.no_grad():
        for batch_size, length in ((1, 1), (3, 8), (5, 33)):
            p4, mask = _example(batch_size, length)
            diff = float((eager(p4, mask) - exported(p4, mask)).abs().max())
            if not diff <= atol:
                raise ConfigurationError(f"{what}: the export differs from the trained network by {diff:.3g} > "
                                         f"{atol:g} at B={batch_size}, P={length}")


def _export(module: TrainedScore, folder: Path, checkpoint: Path) -> tuple[Path, Path | None]:
    """``model.pt`` (TorchScript) and, with ONNX Runtime, ``model.onnx`` of ``module`` in ``folder``
    (made once; each written beside and renamed into place)."""
    import importlib.util
    import io
    import tempfile
    import warnings

    folder.mkdir(parents=True, exist_ok=True)
    scripted_path, onnx_path = folder / "model.pt", folder / "model.onnx"
    if not scripted_path.is_file():
        try:
            scripted = torch.jit.script(module)
        except Exception as err:  # noqa: BLE001 - TorchScript raises several types
            raise ConfigurationError(f"{checkpoint}: the tagger cannot be exported to TorchScript ({err})") from None
        _check_parity(module, scripted, str(checkpoint))
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".pt.tmp", delete=False) as stream:
            scripted.save(stream.name)
        os.replace(stream.name, scripted_path)
    if importlib.util.find_spec("onnxruntime") is None:
        return scripted_path, None
    if not onnx_path.is_file():
        import onnxruntime

        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
            torch.onnx.export(module, _example(2, 5), buffer, input_names=["p4", "mask"], output_names=["score"],
                              dynamic_axes={"p4": {0: "B", 1: "P"}, "mask": {0: "B", 1: "P"}, "score": {0: "B"}},
                              opset_version=17, dynamo=False)
        session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
        _check_parity(module, lambda p4, mask: torch.from_numpy(
            session.run(["score"], {"p4": p4.numpy(), "mask": mask.numpy()})[0]), str(checkpoint))
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".onnx.tmp", delete=False) as stream:
            stream.write(buffer.getvalue())
        os.replace(stream.name, onnx_path)
    return scripted_path, onnx_path


def trained_model(folder: str | Path) -> dict:
    """What a :class:`~coffea_lorentz.user_model.SpecModel` of a ``coffea-lorentz train`` output
    ``folder`` needs (see the module docstring), as keywords: ``path`` and ``format`` (the TorchScript
    export), ``spec``, ``model_sha256``, ``exports``, ``origin`` (the checkpoint) and ``domain`` (the
    training domain its ``metrics.json`` records, or None)."""
    from .identity import model_identity

    folder = Path(folder).expanduser().absolute()
    checkpoint = train_checkpoint(folder)
    if checkpoint is None:
        raise ConfigurationError(f"{folder}: not a coffea-lorentz train output (metrics.json naming <tagger>.pt)")
    tagger, max_constituents, tagger_name = _load_tagger(checkpoint)
    spec = trained_spec(max_constituents)
    spec_json = {key: value for key, value in spec.to_json().items() if key != "classes"}
    identity = model_identity(tagger, extra={"head": HEAD, "spec": spec_json, "trained_as": tagger_name})
    scripted, onnx = _export(TrainedScore(tagger).eval(), cache_root() / "trained" / identity[:32], checkpoint)
    return {"path": str(scripted), "format": "torchscript", "spec": spec, "model_sha256": identity,
            "exports": (("onnx", str(onnx)),) if onnx is not None else (), "origin": str(checkpoint),
            "domain": _domain(folder)}


def _domain(folder: Path):
    """The training domain recorded in ``folder/metrics.json`` (trained on a fileset), else None."""
    from .reweight.domain import TrainingDomain

    try:
        record = json.loads((folder / "metrics.json").read_text()).get("domain")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return TrainingDomain.from_record(record) if isinstance(record, dict) else None
