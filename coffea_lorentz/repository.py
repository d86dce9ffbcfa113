"""Triton model repositories built from taggers.

:func:`build_repository` writes, for each tagger ``NAME``::

    REPOSITORY/
      repository.json            what clients need: tagger names, n_classes, tensor names, parity
      NAME/config.pbtxt          Triton model configuration (parameter model_sha256: the model's identity)
      NAME/1/model.pt            TorchScript: forward(p4, mask) -> softmax probabilities
      NAME/1/model.py            python backend only: a copy of deploy/python_backend/model.py

Served tensors (the batch dimension B is implicit in ``config.pbtxt``, ``max_batch_size`` > 0):

- input ``p4`` FP32 [B, N, 4]: (E, px, py, pz) in GeV; N may differ between requests
- input ``mask`` BOOL [B, N]: True for real constituents
- output ``score`` FP32 [B, n_classes]: class probabilities

The same ``model.pt`` serves in the bundled CPU server (``backend="python"``) and in an NGC
Triton container (``backend="pytorch_libtorch"``): the libtorch backend maps the inputs ``p4`` and
``mask`` to the ``forward`` arguments of the same names and the single output by its position, so
clients send and read the same names with either backend.

Every ``config.pbtxt`` carries the model's identity (:mod:`coffea_lorentz.identity`: a SHA-256 of
its class, config and weights, not of the ``model.pt`` bytes, which differ from one save to the
next) as the string parameter ``model_sha256``, so any client of any server can learn which exact
model it talks to, and two repositories built from the same tagger anywhere agree
(``get_model_config``; see :func:`coffea_lorentz.infer.triton_client.inspect_served_models`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import models
from .errors import InvalidInputError, ModelMismatchError
from .identity import file_identity, model_identity
from .export import ScoredTagger, _example_inputs, check_parity, export_torchscript, load_torchscript

__all__ = [
    "INPUT_P4",
    "INPUT_MASK",
    "OUTPUT_SCORE",
    "REPOSITORY_INFO",
    "SHA256_PARAMETER",
    "ServingOptions",
    "build_repository",
    "default_instance_count",
    "model_config_text",
    "python_backend_source",
    "read_repository_info",
]

INPUT_P4 = "p4"
INPUT_MASK = "mask"
OUTPUT_SCORE = "score"
#: Name of the JSON file describing a repository for clients.
REPOSITORY_INFO = "repository.json"
#: (B, N) at which exported and eager scores are compared (the largest one dominates the cost).
PARITY_SHAPES: tuple[tuple[int, int], ...] = ((1, 1), (2, 8), (5, 33), (4, 64))
#: Version of the layout of ``repository.json``.
REPOSITORY_FORMAT = 1
#: Key of the ``config.pbtxt`` parameter holding the model's identity (:func:`coffea_lorentz.identity.model_identity`).
SHA256_PARAMETER = "model_sha256"

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_KINDS = ("KIND_CPU", "KIND_GPU")
_BACKENDS = ("python", "pytorch_libtorch")
_PACKAGE_DIR = Path(__file__).resolve().parent


#: Most CPU model instances :func:`default_instance_count` gives.
MAX_DEFAULT_CPU_INSTANCES = 8


def default_instance_count(kind: str = "KIND_CPU") -> int:
    """Model instances per device when none is given: one per GPU for ``KIND_GPU``; for ``KIND_CPU``
    one per core this process may use (at most :data:`MAX_DEFAULT_CPU_INSTANCES`), each with one
    torch thread (``ServingOptions.intra_op_threads = 1``).

    Measured with ``bench/bench_clients.py`` (identity model, 2 cores, 1024-jet requests, 4 in
    flight): two single-threaded instances served 1.7× the jets/s of one; torch's default thread
    pool per instance served a third of what one thread did, its threads fighting the client's and
    the other stubs' for the cores.
    """
    if kind == "KIND_GPU":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_CPU_INSTANCES))


@dataclass(frozen=True, kw_only=True)
class ServingOptions:
    """How Triton schedules one model; the same options apply to every model of a repository.

    ``max_queue_delay_us`` is how long the dynamic batcher waits to fill a batch (microseconds);
    ``preferred_batch_sizes`` are batch sizes (in jets) it tries to form; ``instance_count`` model
    copies run per device of ``kind`` (None: :func:`default_instance_count`, from the cores of the
    machine building the repository); ``intra_op_threads`` sets torch CPU threads per instance in
    the python backend (0 = torch default; default 1, see :func:`default_instance_count`).
    """

    max_batch_size: int = 1024
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 100
    instance_count: int | None = None
    kind: str = "KIND_CPU"
    backend: str = "python"
    intra_op_threads: int = 1

    def __post_init__(self) -> None:
        if self.instance_count is None:
            object.__setattr__(self, "instance_count", default_instance_count(self.kind))
        if self.max_batch_size < 1:
            raise InvalidInputError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        bad = [size for size in self.preferred_batch_sizes if not 1 <= size <= self.max_batch_size]
        if bad:
            raise InvalidInputError(
                f"preferred_batch_sizes must lie in [1, max_batch_size={self.max_batch_size}], got {bad}"
            )
        if self.max_queue_delay_us < 0:
            raise InvalidInputError(f"max_queue_delay_us must be >= 0, got {self.max_queue_delay_us}")
        if self.instance_count < 1:
            raise InvalidInputError(f"instance_count must be >= 1, got {self.instance_count}")
        if self.kind not in _KINDS:
            raise InvalidInputError(f"kind must be one of {', '.join(_KINDS)}, got {self.kind!r}")
        if self.backend not in _BACKENDS:
            raise InvalidInputError(f"backend must be one of {', '.join(_BACKENDS)}, got {self.backend!r}")
        if self.intra_op_threads < 0:
            raise InvalidInputError(f"intra_op_threads must be >= 0, got {self.intra_op_threads}")


def python_backend_source(file: str = "model.py") -> Path:
    """A python-backend model file of ``deploy/python_backend``: ``model.py`` (the zoo's ``p4`` +
    ``mask``) or ``spec_model.py`` (a model brought with its spec)."""
    for root in (_PACKAGE_DIR.parent, Path.cwd()):
        candidate = root / "deploy" / "python_backend" / file
        if candidate.is_file():
            return candidate
    raise InvalidInputError(
        f"deploy/python_backend/{file} not found next to {_PACKAGE_DIR} or in {Path.cwd()}; "
        "run from a source checkout of coffea-lorentz"
    )


def model_config_text(name: str, n_classes: int, options: ServingOptions, *, sha256: str | None = None,
                      spec=None, model_format: str = "torchscript") -> str:
    """The ``config.pbtxt`` of model ``name`` returning ``n_classes`` values per jet.

    ``sha256``, the model's identity (:mod:`coffea_lorentz.identity`), is written as the string
    parameter :data:`SHA256_PARAMETER` (left out when None). Without ``spec`` the model is a zoo
    tagger (``p4``, ``mask`` → ``score``); with a :class:`~coffea_lorentz.modelspec.ModelSpec` its
    inputs are the spec's (FP32 [C, P] or [P, C], P -1 for a variable length) and its output the
    spec's first, and ``model_format`` (``"onnx"`` or ``"torchscript"``) chooses the platform of a
    non-python backend: ``onnxruntime_onnx`` or ``pytorch_libtorch``.
    """
    if options.backend == "python":
        header = 'backend: "python"'
    elif spec is not None and model_format == "onnx":
        header = 'platform: "onnxruntime_onnx"\ndefault_model_filename: "model.onnx"'
    else:
        header = 'platform: "pytorch_libtorch"\ndefault_model_filename: "model.pt"'
    batching = []
    if options.preferred_batch_sizes:
        sizes = ", ".join(str(size) for size in options.preferred_batch_sizes)
        batching.append(f"  preferred_batch_size: [ {sizes} ]")
    batching.append(f"  max_queue_delay_microseconds: {options.max_queue_delay_us}")
    parameters = []
    if sha256 is not None:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise InvalidInputError(f"model {name!r}: sha256 must be 64 lowercase hex digits, got {sha256!r}")
        parameters.append(_parameter(SHA256_PARAMETER, sha256))
    if options.backend == "python" and options.intra_op_threads:
        parameters.append(_parameter("intra_op_threads", str(options.intra_op_threads)))
    if options.backend == "pytorch_libtorch" and not (spec is not None and model_format == "onnx"):
        parameters.append(_parameter("INFERENCE_MODE", "true"))
    if spec is None:
        inputs = [_tensor(INPUT_P4, "TYPE_FP32", "-1, 4"), _tensor(INPUT_MASK, "TYPE_BOOL", "-1")]
        output = OUTPUT_SCORE
    else:
        inputs = [_tensor(item.name, "TYPE_FP32", ", ".join(str(d) for d in item.shape(item.length or -1)))
                  for item in spec.inputs]
        output = spec.outputs[0]
    lines = [
        f'name: "{name}"',
        header,
        f"max_batch_size: {options.max_batch_size}",
        "dynamic_batching {",
        *batching,
        "}",
        "input [",
        ",\n".join(inputs),
        "]",
        "output [",
        _tensor(output, "TYPE_FP32", str(n_classes)),
        "]",
        "instance_group [",
        "  {",
        f"    count: {options.instance_count}",
        f"    kind: {options.kind}",
        "  }",
        "]",
        *parameters,
    ]
    return "\n".join(lines) + "\n"


def _tensor(name: str, data_type: str, dims: str) -> str:
    return f'  {{\n    name: "{name}"\n    data_type: {data_type}\n    dims: [ {dims} ]\n  }}'


def _parameter(key: str, value: str) -> str:
    return f'parameters {{\n  key: "{key}"\n  value: {{ string_value: "{value}" }}\n}}'


def _export(name: str, tagger: nn.Module | str | os.PathLike, path: Path) -> dict:
    """Write ``path`` (model.pt) for ``tagger``; returns the repository.json entry of the model."""
    if isinstance(tagger, nn.Module):
        tagger = tagger.eval()
        # One parity check, here, to record its value (it raises above 1e-5 like the export's own).
        exported = export_torchscript(tagger, path, parity_shapes=())
        parity = check_parity(ScoredTagger(tagger), exported, shapes=PARITY_SHAPES)
        source = f"{type(tagger).__module__}.{type(tagger).__qualname__}"
    else:
        source_path = Path(tagger)
        if not source_path.is_file():
            raise InvalidInputError(f"tagger {name!r}: exported model file not found: {source_path}")
        shutil.copyfile(source_path, path)
        exported = load_torchscript(path)
        parity = None
        source = str(source_path.resolve())
    arguments = [argument.name for argument in exported.forward.schema.arguments[1:]]
    if arguments != [INPUT_P4, INPUT_MASK]:
        raise ModelMismatchError(
            f"tagger {name!r} ({source}): forward arguments must be ({INPUT_P4}, {INPUT_MASK}), got ({', '.join(arguments)})"
        )
    p4, mask = _example_inputs(2, 5, torch.float32)
    with torch.no_grad():
        scores = exported(p4, mask)
    if scores.dim() != 2 or scores.shape[0] != 2 or scores.dtype != torch.float32:
        raise ModelMismatchError(
            f"tagger {name!r} ({source}): expected float32 scores [B=2, n_classes], "
            f"got {scores.dtype} {list(scores.shape)}"
        )
    sums = scores.sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        raise ModelMismatchError(
            f"tagger {name!r} ({source}): scores must be probabilities summing to 1, got sums {sums.tolist()}"
        )
    return {
        "n_classes": int(scores.shape[1]),
        "source": source,
        "export_parity_max_abs_diff": parity,
        "sha256": model_identity(tagger, extra={"head": "softmax"}) if isinstance(tagger, nn.Module) else file_identity(path),
    }


def _export_spec_model(name: str, model, version_dir: Path) -> dict:
    """Copy a model brought with its spec into ``version_dir`` (``model.onnx`` or ``model.pt``);
    returns its repository.json entry. Its output length comes from the spec's class names, else
    from one call of the model here."""
    target = version_dir / ("model.onnx" if model.format == "onnx" else "model.pt")
    shutil.copyfile(model.path, target)
    if model.spec.classes:
        n_outputs = len(model.spec.classes)
    else:
        from .pipeline import output_size

        backend = model.backend()
        model.check(backend)
        n_outputs = output_size(model, backend)
    return {"n_classes": n_outputs, "source": model.path, "format": model.format, "spec": model.spec.to_json(),
            "export_parity_max_abs_diff": None, "sha256": model.identity}


def build_repository(
    path: str | Path,
    taggers: Mapping[str, nn.Module | str | os.PathLike],
    *,
    max_batch_size: int = 1024,
    preferred_batch_sizes: tuple[int, ...] = (),
    max_queue_delay_us: int = 100,
    instance_count: int | None = None,
    kind: str = "KIND_CPU",
    backend: str = "python",
    intra_op_threads: int = 1,
) -> Path:
    """Write a Triton model repository at ``path`` serving ``taggers``; returns the resolved path.

    ``taggers`` maps a model name to a tagger module (exported here, softmax added), to the path
    of a ``model.pt`` already exported by :func:`coffea_lorentz.export.export_torchscript`, or to
    a model brought with its spec (:class:`~coffea_lorentz.user_model.SpecModel`: ONNX or
    TorchScript, served with the spec's inputs and output; the python backend runs ONNX through
    ONNX Runtime, an NGC server's ``onnxruntime_onnx`` or ``pytorch_libtorch`` platform natively). Use
    :func:`coffea_lorentz.models.pretrained` for registry taggers with their default weights. The repository is built
    in a temporary directory beside ``path`` and moved into place at the end, so ``path`` never
    holds a half-written repository; an existing repository at ``path`` is replaced, any other
    non-empty directory is refused.
    """
    options = ServingOptions(
        max_batch_size=max_batch_size,
        preferred_batch_sizes=tuple(preferred_batch_sizes),
        max_queue_delay_us=max_queue_delay_us,
        instance_count=instance_count,
        kind=kind,
        backend=backend,
        intra_op_threads=intra_op_threads,
    )
    if not taggers:
        raise InvalidInputError("build_repository: no taggers given")
    for name in taggers:
        if not _MODEL_NAME.match(name):
            raise InvalidInputError(
                f"model name {name!r} must start with a letter or digit and hold only letters, digits, '_', '.', '-'"
            )
    path = Path(path).resolve()
    if path.exists() and not (path / REPOSITORY_INFO).is_file() and (not path.is_dir() or any(path.iterdir())):
        raise InvalidInputError(f"{path}: exists and is not a model repository (no {REPOSITORY_INFO}); not replacing it")
    path.parent.mkdir(parents=True, exist_ok=True)
    from .user_model import SpecModel

    model_py = python_backend_source() if backend == "python" else None
    spec_model_py = python_backend_source("spec_model.py") if backend == "python" else None

    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        entries = {}
        for name, tagger in taggers.items():
            version_dir = staging / name / "1"
            version_dir.mkdir(parents=True)
            if isinstance(tagger, SpecModel):
                entries[name] = _export_spec_model(name, tagger, version_dir)
                python_source, spec, model_format = spec_model_py, tagger.spec, tagger.format
            else:
                entries[name] = _export(name, tagger, version_dir / "model.pt")
                python_source, spec, model_format = model_py, None, "torchscript"
            if python_source is not None:
                shutil.copyfile(python_source, version_dir / "model.py")
            config = model_config_text(name, entries[name]["n_classes"], options, sha256=entries[name]["sha256"],
                                       spec=spec, model_format=model_format)
            (staging / name / "config.pbtxt").write_text(config)
        info = {
            "format": REPOSITORY_FORMAT,
            "taggers": list(taggers),
            "inputs": {
                INPUT_P4: {"datatype": "FP32", "shape": [-1, -1, 4], "unit": "GeV", "layout": "E,px,py,pz"},
                INPUT_MASK: {"datatype": "BOOL", "shape": [-1, -1]},
            },
            "output": OUTPUT_SCORE,
            "serving": {
                "backend": options.backend,
                "kind": options.kind,
                "max_batch_size": options.max_batch_size,
                "preferred_batch_sizes": list(options.preferred_batch_sizes),
                "max_queue_delay_us": options.max_queue_delay_us,
                "instance_count": options.instance_count,
            },
            "torch_version": torch.__version__,
            "models": entries,
        }
        (staging / REPOSITORY_INFO).write_text(json.dumps(info, indent=2) + "\n")
        staging.chmod(0o755)
        _replace_dir(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _replace_dir(new: Path, target: Path) -> None:
    """Move directory ``new`` to ``target``, replacing an existing ``target``."""
    if not target.exists():
        new.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    old.rmdir()
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_repository_info(path: str | Path) -> dict:
    """The contents of ``repository.json`` in repository ``path``."""
    info_path = Path(path) / REPOSITORY_INFO
    try:
        return json.loads(info_path.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"{info_path}: not found; build the repository with build_repository") from None
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{info_path}: not valid JSON ({err})") from None
