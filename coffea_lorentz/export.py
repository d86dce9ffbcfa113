"""Export taggers to the artifacts Triton serves.

The served artifact is a TorchScript file holding :class:`ScoredTagger`: ``forward(p4, mask)``
returns softmax probabilities [B, n_classes]. The same ``model.pt`` loads in the local python
backend and in Triton's ``pytorch_libtorch`` backend on a GPU production server, so moving to an
NGC container is a change of ``config.pbtxt``, not a re-export.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .errors import InvalidInputError

__all__ = ["ScoredTagger", "export_torchscript", "export_onnx", "load_torchscript", "check_parity"]

#: ONNX opset of :func:`export_onnx`.
ONNX_OPSET = 17


class ScoredTagger(nn.Module):
    """Wraps a tagger: ``p4`` [B, N, 4] GeV, ``mask`` [B, N] bool → probabilities [B, n_classes]."""

    def __init__(self, tagger: nn.Module):
        super().__init__()
        self.tagger = tagger

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.tagger(p4, mask), dim=-1)


def _example_inputs(batch_size: int, n_constituents: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch_size * 1000 + n_constituents)
    momentum = torch.randn(batch_size, n_constituents, 3, generator=generator, dtype=dtype) * 30.0
    mass = torch.rand(batch_size, n_constituents, generator=generator, dtype=dtype)
    energy = torch.sqrt((momentum**2).sum(-1) + mass**2)
    p4 = torch.cat([energy.unsqueeze(-1), momentum], dim=-1)
    lengths = torch.randint(1, n_constituents + 1, (batch_size,), generator=generator)
    mask = torch.arange(n_constituents).unsqueeze(0) < lengths.unsqueeze(1)
    return p4, mask


def export_torchscript(
    tagger: nn.Module,
    path: str | Path,
    *,
    softmax: bool = True,
    parity_shapes: tuple[tuple[int, int], ...] | None = None,
) -> torch.jit.ScriptModule:
    """Script ``tagger`` (wrapped in :class:`ScoredTagger` when ``softmax``) and save it to ``path``.

    Scripting keeps the batch size B and the length N dynamic; a tagger that cannot be scripted
    raises :class:`InvalidInputError` (a trace would silently bake in shapes). The saved file is
    then checked against eager outputs at several (B, N); ``parity_shapes`` overrides those (default:
    those of :func:`check_parity`).
    """
    module = ScoredTagger(tagger) if softmax else tagger
    module = module.eval()
    try:
        exported = torch.jit.script(module)
    except Exception as err:  # noqa: BLE001 - TorchScript raises several types
        raise InvalidInputError(f"{type(tagger).__name__} cannot be exported to TorchScript: {err}") from err
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    exported.save(str(tmp))
    tmp.replace(path)
    if parity_shapes is None:
        check_parity(module, exported)
    else:
        check_parity(module, exported, shapes=parity_shapes)
    return exported


def export_onnx(tagger: nn.Module, *, softmax: bool = True, mask_dtype: torch.dtype = torch.bool) -> bytes:
    """The ONNX model (bytes) of ``tagger`` (wrapped in :class:`ScoredTagger` when ``softmax``):
    inputs ``p4`` FP32 [B, N, 4] and ``mask`` BOOL [B, N] with B and N dynamic, output ``score``
    [B, n_classes]; opset :data:`ONNX_OPSET`, the TorchScript-based exporter (the one whose
    dynamic axes hold for every tagger of the zoo), constants folded. Checked against eager outputs
    at several (B, N) (:func:`check_parity`, 1e-5) with ONNX Runtime before it is returned.

    ``mask_dtype=torch.float32`` makes ``mask`` FP32 [B, N] (1 = real constituent, compared with
    0.5 inside the graph), for a server that hands every input over as FP32
    (``deploy/python_backend/spec_model.py``).

    Dynamic B and N cost nothing measurable here: a model exported at the fixed shape [256, 32, 4]
    ran no faster in ONNX Runtime (README, "ONNX Runtime for the zoo").
    """
    import io
    import warnings

    module = (ScoredTagger(tagger) if softmax else tagger).eval()
    if mask_dtype not in (torch.bool, torch.float32):
        raise InvalidInputError(f"export_onnx: mask_dtype must be torch.bool or torch.float32, got {mask_dtype}")
    exported_module = module if mask_dtype == torch.bool else _FloatMask(module).eval()
    p4, mask = _example_inputs(2, 5, torch.float32)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
        torch.onnx.export(exported_module, (p4, mask.to(mask_dtype)), buffer, input_names=["p4", "mask"],
                          output_names=["score"],
                          dynamic_axes={"p4": {0: "B", 1: "N"}, "mask": {0: "B", 1: "N"}, "score": {0: "B"}},
                          opset_version=ONNX_OPSET, do_constant_folding=True, dynamo=False)
    data = _without_reduce_l2(buffer.getvalue())
    check_parity(module, _OnnxModule(data, mask_dtype=mask_dtype))
    return data


def _without_reduce_l2(data: bytes) -> bytes:
    """The model with each ``ReduceL2`` node replaced by ``Sqrt(ReduceSumSquare(x))`` (the same
    attributes): ONNX Runtime 1.19, the bundled server's, has no float64 ``ReduceL2`` and refuses
    LLoCa's and LGN's exports without this. Unchanged where the ``onnx`` package is absent."""
    try:
        import onnx
    except ImportError:
        return data
    model = onnx.load_from_string(data)
    if not any(node.op_type == "ReduceL2" for node in model.graph.node):
        return data
    nodes = []
    for node in model.graph.node:
        if node.op_type != "ReduceL2":
            nodes.append(node)
            continue
        squared = f"{node.output[0]}__sum_square"
        reduce = onnx.helper.make_node("ReduceSumSquare", list(node.input), [squared], name=f"{node.name}__sum_square")
        reduce.attribute.extend(node.attribute)
        nodes += [reduce, onnx.helper.make_node("Sqrt", [squared], list(node.output), name=f"{node.name}__sqrt")]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model.SerializeToString()


class _FloatMask(nn.Module):
    """``module(p4, mask > 0.5)`` for a FP32 ``mask`` [B, N]."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.module(p4, mask > 0.5)


class _OnnxModule:
    """ONNX Runtime behind a ``module(p4, mask)`` call (``mask`` bool [B, N]), for :func:`check_parity`."""

    def __init__(self, data: bytes, *, mask_dtype: torch.dtype = torch.bool):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        self.mask_dtype = mask_dtype

    def __call__(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        (score,) = self.session.run(["score"], {"p4": p4.numpy(), "mask": mask.to(self.mask_dtype).numpy()})
        return torch.from_numpy(score)


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """Load an exported tagger from ``path`` for CPU inference."""
    return torch.jit.load(str(path), map_location="cpu").eval()


def check_parity(
    eager: nn.Module,
    exported: nn.Module,
    *,
    shapes: tuple[tuple[int, int], ...] = ((1, 1), (2, 8), (5, 33), (16, 128)),
    atol: float = 1e-5,
) -> float:
    """Largest |eager − exported| over inputs of the given (B, N); raises above ``atol``."""
    worst = 0.0
    with torch.no_grad():
        for batch_size, n_constituents in shapes:
            p4, mask = _example_inputs(batch_size, n_constituents, torch.float32)
            diff = (eager(p4, mask) - exported(p4, mask)).abs().max().item()
            worst = max(worst, diff)
            if not diff <= atol:
                raise InvalidInputError(
                    f"exported model differs from eager by {diff:.3g} > {atol:g} at B={batch_size}, N={n_constituents}"
                )
    return worst
