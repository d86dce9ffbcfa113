"""A model an analyst brings: a file (ONNX or TorchScript) and its :class:`~coffea_lorentz.modelspec.ModelSpec`.

:func:`load_model` accepts

- a folder holding ``model.onnx`` and ``preprocess.json`` (a weaver-core export); the model's name
  is the folder's name;
- a ``.onnx`` or TorchScript ``.pt`` file with a spec beside it: ``<stem>.json``, or
  ``preprocess.json`` in the same folder, or ``spec=`` given;
- a ``coffea-lorentz train`` output folder (``metrics.json`` and ``<tagger>.pt``): the tagger it
  was trained as, with the same p4 + mask inputs and truncation (:mod:`coffea_lorentz.trained`);
- ``NAME=PATH`` for any of them, to choose the name.

:func:`served_model` describes a model already on a Triton server, known by its name and spec only.

Before any event is read, :meth:`SpecModel.check` compares the model's declared inputs with the
spec (names, rank, static channel and length sizes) and refuses a mismatch with one line naming the
input. The model's identity (:func:`coffea_lorentz.identity.file_identity`) covers the file and
the spec.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigurationError, ModelMismatchError
from .modelspec import ModelSpec, load_spec

__all__ = ["SpecModel", "load_model", "looks_like_path", "process_model_backend", "served_model", "FORMATS"]

#: Model file formats: ONNX, or TorchScript; ``"served"``: no file here, the model is on a server.
FORMATS = ("onnx", "torchscript", "served")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def looks_like_path(text: str) -> bool:
    """Whether a ``--tagger`` value names a file or folder (or ``NAME=PATH``) rather than a zoo tagger."""
    return "=" in text or "/" in text or text.endswith((".onnx", ".pt", ".json")) or Path(text).exists()


@dataclass(frozen=True)
class SpecModel:
    """A model file with its spec.

    Attributes:
        name: used in branch names (``<Collection>_<name>_<class>``) and as the served model's name.
        path: the model file (absolute); ``""`` for a model on a server only.
        format: ``"onnx"``, ``"torchscript"`` or ``"served"``.
        spec: its inputs, output and class names.
        served_sha256: for a ``"served"`` model, the ``model_sha256`` its server publishes (None:
            not published, or not asked yet).
        model_sha256: its identity when known apart from the file's bytes (a trained checkpoint:
            the rebuilt tagger's :func:`~coffea_lorentz.identity.model_identity`); None: from the file.
        exports: the same model in other formats, as (format, path) pairs (a trained checkpoint's
            ONNX export beside its TorchScript one).
        origin: the file it was made from, when ``path`` is an export of it (a checkpoint); else "".
        domain: the jets it was trained on (a train folder's ``metrics.json`` ``domain``, a
            :class:`~coffea_lorentz.reweight.domain.TrainingDomain`); None when unknown. A run counts
            the jets outside it.
    """

    name: str
    path: str
    format: str
    spec: ModelSpec
    served_sha256: str | None = None
    model_sha256: str | None = None
    exports: tuple[tuple[str, str], ...] = ()
    origin: str = ""
    domain: object = None

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names: the spec's, else ``score_0``, ``score_1``, … once the class count is known."""
        return self.spec.classes

    def with_classes(self, classes: Sequence[str]) -> SpecModel:
        """The same model with other class names (they name branches only)."""
        from dataclasses import replace

        return replace(self, spec=self.spec.with_classes(classes))

    def class_names(self, n_classes: int) -> tuple[str, ...]:
        """The names of ``n_classes`` outputs; refuses a spec naming another number of classes."""
        if self.spec.classes:
            if len(self.spec.classes) != n_classes:
                raise ModelMismatchError(f"model {self.name!r} ({self.path}): {n_classes} outputs, but the spec names "
                                         f"{len(self.spec.classes)} classes ({', '.join(self.spec.classes)})")
            return self.spec.classes
        return tuple(f"score_{index}" for index in range(n_classes))

    @property
    def identity(self) -> str:
        """Hex SHA-256 of what determines its outputs: the file and the spec (class names aside: they
        name branches, recorded in the run's settings apart); for a model on a server
        only, the served ``model_sha256`` (else its name: a server that publishes no identity cannot
        tell one version from the next) and the spec."""
        from .identity import canonical_sha256, file_identity

        spec = {key: value for key, value in self.spec.to_json().items() if key != "classes"}  # names, not outputs
        if self.format == "served":
            return canonical_sha256({"served": self.served_sha256 or f"unpublished:{self.name}", "spec": spec})
        if self.model_sha256 is not None:
            return self.model_sha256
        return file_identity(self.path, extra={"spec": spec, "format": self.format})

    def backend(self, kind: str | None = None, *, n_threads: int | None = None):
        """An in-process backend for it: ``"onnx"`` (ONNX Runtime) or ``"torch"`` (TorchScript);
        default: the file's own format."""
        if self.format == "served":
            raise ConfigurationError(f"model {self.name!r} is on a Triton server only (no file here); it runs with "
                                     "backend 'triton' and --server")
        kind = kind or ("onnx" if self.format == "onnx" else "torch")
        files = {self.format: self.path, **dict(self.exports)}
        if kind == "onnx":
            if "onnx" not in files:
                raise ConfigurationError(f"model {self.name!r}: backend 'onnx' needs an .onnx file, got {self.path}"
                                         + (" (no ONNX export: pip install onnxruntime)" if self.origin else ""))
            from .infer.onnx_backend import OnnxBackend

            return OnnxBackend(files["onnx"], output=self.spec.outputs[0] if self.spec.outputs else None,
                               n_threads=n_threads)
        if kind == "torch":
            if "torchscript" not in files:
                raise ConfigurationError(f"model {self.name!r}: backend 'torch' runs TorchScript; {self.path} is "
                                         "ONNX (use backend 'onnx')")
            from .infer.torchscript_backend import TorchScriptBackend

            return TorchScriptBackend(files["torchscript"], n_threads=n_threads)
        raise ConfigurationError(f"model {self.name!r}: backend must be 'onnx' or 'torch' in-process, got {kind!r}")

    def check(self, backend) -> None:
        """Refuse, with one line naming the input, a model whose declared inputs differ from the spec."""
        declared = backend.input_signature()
        where = f"model {self.name!r} ({self.path})"
        missing = [name for name in self.spec.input_names if name not in declared]
        extra = [name for name in declared if name not in self.spec.input_names]
        if missing or extra:
            raise ModelMismatchError(f"{where}: the spec's inputs {list(self.spec.input_names)} differ from the model's "
                                     f"{list(declared)}" + (f" (not in the model: {', '.join(missing)})" if missing else "")
                                     + (f" (not in the spec: {', '.join(extra)})" if extra else ""))
        for spec_input in self.spec.inputs:
            dtype, shape = declared[spec_input.name]
            if dtype != "FP32":
                raise ModelMismatchError(f"{where}: input {spec_input.name!r} is {dtype}; the spec builds FP32")
            if not shape:
                continue
            if len(shape) != 3:
                raise ModelMismatchError(f"{where}: input {spec_input.name!r} has shape {shape}; the spec builds "
                                         f"[B, {', '.join(map(str, spec_input.shape()))}]")
            for axis, (size, expected) in enumerate(zip(shape[1:], spec_input.shape(spec_input.length or -1)), start=1):
                if size != -1 and expected != -1 and size != expected:
                    raise ModelMismatchError(
                        f"{where}: input {spec_input.name!r} axis {axis} is {size} in the model, {expected} in the spec "
                        f"(shape {shape} vs [B, {', '.join(map(str, spec_input.shape()))}], layout {spec_input.layout})")
                if size != -1 and expected == -1 and not spec_input.min_length <= size <= spec_input.max_length:
                    raise ModelMismatchError(f"{where}: input {spec_input.name!r} needs exactly {size} objects; give "
                                             f"the spec a fixed length {size}")


@functools.lru_cache(maxsize=16)
def process_model_backend(model: SpecModel, kind: str | tuple | None = None):
    """The backend of ``model`` in this process, created once (one ONNX Runtime session or
    TorchScript module per Dask worker process, or one gRPC client) and reused by every later chunk.

    ``kind``: ``"onnx"``, ``"torch"``, None (by the file's format), or ``("triton", url,
    client_options)`` with ``client_options`` a tuple of (name, value) pairs
    (:class:`~coffea_lorentz.infer.triton_spec.TritonSpecBackend`).
    """
    if isinstance(kind, tuple):
        from .infer.triton_spec import TritonSpecBackend

        _, url, options = kind
        return TritonSpecBackend(url, model.name, model.spec, **dict(options))
    return model.backend(kind)


def served_model(name: str, spec: str | Path | ModelSpec, *, classes: Sequence[str] | None = None) -> SpecModel:
    """A model already served by a Triton server under ``name``, described by ``spec`` (a spec
    JSON or weaver ``preprocess.json``): the run reads its inputs, output and classes from the
    spec and checks them against what the server declares before any chunk."""
    if not _NAME.match(name):
        raise ConfigurationError(f"served model name {name!r} must start with a letter or digit and hold only "
                                 "letters, digits, '_', '.', '-'")
    model_spec = spec if isinstance(spec, ModelSpec) else load_spec(spec)
    if classes:
        model_spec = model_spec.with_classes(classes)
    return SpecModel(name=name, path="", format="served", spec=model_spec)


def _spec_beside(path: Path) -> Path | None:
    for candidate in (path.with_suffix(".json"), path.parent / "preprocess.json"):
        if candidate.is_file():
            return candidate
    return None


def load_model(path: str | Path, *, name: str | None = None, spec: str | Path | ModelSpec | None = None,
               classes: Sequence[str] | None = None) -> SpecModel:
    """The model at ``path`` (see the module docstring) with its spec; ``classes`` overrides the
    spec's class names."""
    text = str(path)
    if name is None and "=" in text and not Path(text).exists():
        name, text = text.split("=", 1)
    location = Path(text).expanduser().absolute()
    if location.is_dir() and spec is None:
        from .trained import train_checkpoint, trained_model

        if train_checkpoint(location) is not None:
            model = SpecModel(name=name or location.name, **trained_model(location))
            if not _NAME.match(model.name):
                raise ConfigurationError(f"model name {model.name!r} (from {text}) must start with a letter or digit "
                                         "and hold only letters, digits, '_', '.', '-'; choose one with NAME=PATH")
            return model.with_classes(classes) if classes else model
    if location.is_dir():
        onnx = location / "model.onnx"
        if not onnx.is_file():
            found = sorted(p.name for p in location.iterdir())[:8]
            raise ConfigurationError(f"{location}: a model folder holds model.onnx and preprocess.json; found "
                                     f"{', '.join(found) or 'nothing'}")
        file, default_name = onnx, location.name
    elif location.is_file():
        file, default_name = location, location.stem
    else:
        raise ConfigurationError(f"{location}: no such model file or folder")
    model_format = "onnx" if file.suffix == ".onnx" else "torchscript"
    if isinstance(spec, ModelSpec):
        model_spec = spec
    else:
        spec_path = Path(spec) if spec is not None else _spec_beside(file)
        if spec_path is None:
            raise ConfigurationError(f"{file}: no model spec beside it ({file.with_suffix('.json').name} or "
                                     "preprocess.json); give one with --spec")
        model_spec = load_spec(spec_path)
    if classes:
        model_spec = model_spec.with_classes(classes)
    name = name or default_name
    if not _NAME.match(name):
        raise ConfigurationError(f"model name {name!r} (from {text}) must start with a letter or digit and hold only "
                                 "letters, digits, '_', '.', '-'; choose one with NAME=PATH")
    return SpecModel(name=name, path=str(file), format=model_format, spec=model_spec)
