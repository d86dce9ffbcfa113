"""Checks before any chunk runs: the taggers exist, and which exact model scores each of them.

A run refuses to start, with one line each, for an unknown tagger (with the closest names) and
for a server that does not serve every tagger with the expected signature and a
``max_batch_size`` that fits the batches (:func:`coffea_lorentz.infer.inspect_served_models`);
a model brought with its spec must be served with the spec's inputs (names, datatypes, shapes) and
output (:func:`coffea_lorentz.infer.triton_spec.served_spec_models`).
The SHA-256 of each model goes into every chunk file, so an output folder never mixes models.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..batch import BatchConfig
from ..errors import ConfigurationError

__all__ = ["check_taggers", "torch_hashes", "served_hashes", "served_preflight", "given_server_preflight",
           "model_kind_of", "process_kind", "load_models"]


def check_taggers(taggers: Sequence[str]) -> None:
    import difflib

    from ..models import available, shipped_weights

    known = set(available())
    for name in taggers:
        if name not in known and shipped_weights(name) is None:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigurationError(f"unknown tagger {name!r}{hint} (available: {', '.join(sorted(known))})")


def torch_hashes(taggers: Sequence[str]) -> dict[str, str]:
    """Tagger → identity of the model the in-process backend scores with (the same as a served one's)."""
    from ..identity import model_identity
    from ..models import pretrained

    return {name: model_identity(pretrained(name), extra={"head": "softmax"}) for name in taggers}


def served_hashes(url: str, taggers: Sequence[str], batch_config: BatchConfig, *, server_wait_s: float,
                  **security) -> dict[str, str]:
    """Check the server before any chunk (one line per problem); tagger → served model SHA-256.
    ``security``: the client's ``tls`` and ``token`` (:mod:`coffea_lorentz.infer.security`)."""
    from ..infer.triton_client import inspect_served_models

    served = inspect_served_models(url, list(taggers), max_batch_size=batch_config.max_batch_size,
                                   server_wait_s=min(server_wait_s, 30.0), **security)
    return {name: served[name].sha256 or f"unknown:{name}" for name in taggers}


def served_preflight(url: str, taggers: Sequence[str], brought: list, model_kind: str | None,
                     batch_config: BatchConfig, *, server_wait_s: float, **security) -> tuple[dict[str, str], list]:
    """The server at ``url`` checked before any chunk: the served hashes of ``taggers`` (zoo taggers
    and reweighters' classifiers), and the models brought with a spec as that server serves them
    (when they are served, ``model_kind == "triton"``)."""
    hashes = served_hashes(url, taggers, batch_config, server_wait_s=server_wait_s, **security) if taggers else {}
    if model_kind == "triton":
        from ..infer.triton_spec import served_spec_models

        brought = served_spec_models(url, [model for model, _ in brought], batch_config, server_wait_s=server_wait_s,
                                     **security)
    return hashes, brought


def given_server_preflight(url: str, taggers: Sequence[str], brought: list, model_kind: str | None,
                           batch_config: BatchConfig, *, server_wait_s: float,
                           **security) -> tuple[dict[str, str], list]:
    """:func:`served_preflight` of a server given with ``--server``; a server that never answered is
    one line that says how to get one."""
    from ..errors import ServerError

    try:
        return served_preflight(url, taggers, brought, model_kind, batch_config, server_wait_s=server_wait_s,
                                **security)
    except ServerError as err:
        if "UNAVAILABLE" not in str(err) and "failed to connect" not in str(err).lower():
            raise
        raise ServerError(f"no Triton server answers at {url}: start one there with `coffea-lorentz "
                          f"serve`, fix the address, or drop --server (the run then starts its own); {err}") from None


def model_kind_of(backend: str, model_backend: str | None) -> str | None:
    """Where the models brought with a spec run: ``"triton"``, ``"onnx"``, ``"torch"`` or None
    (in-process, by format), from the run's ``backend`` and its ``model_backend`` (None: follow ``backend``)."""
    if model_backend is not None:
        return model_backend
    return {"triton": "triton", "onnx": "onnx"}.get(backend)


def process_kind(model_kind: str | None, url: str | None, options: dict):
    """What :func:`~coffea_lorentz.user_model.process_model_backend` gets: the in-process kind, or
    ``("triton", url, client options)``."""
    if model_kind != "triton":
        return model_kind
    return ("triton", url, tuple(sorted((key, value) for key, value in options.items() if key != "shared_memory")))


def load_models(models: Sequence, taggers: Sequence[str], kind: str | None) -> list:
    """(model, class names) for each of ``models`` (paths, ``NAME=PATH`` or
    :class:`~coffea_lorentz.user_model.SpecModel`), each checked against its spec here when this
    process can run it (a served one's classes come from its server,
    :func:`~coffea_lorentz.infer.triton_spec.served_spec_models`); a name used twice, or also by one
    of ``taggers``, is refused."""
    import importlib.util

    from ..pipeline import output_size
    from ..user_model import SpecModel, load_model

    brought = []
    for given in models:
        model = given if isinstance(given, SpecModel) else load_model(given)
        runnable_here = model.format == "torchscript" or (
            model.format == "onnx" and importlib.util.find_spec("onnxruntime") is not None)
        if model.format == "served" and kind != "triton":
            raise ConfigurationError(f"model {model.name!r} is on a Triton server only; run it with --backend triton "
                                     "and --server URL")
        if kind == "triton" and not runnable_here:
            brought.append((model, ()))  # checked against the server that serves it
            continue
        backend = model.backend(None if kind == "triton" else kind)
        model.check(backend)
        brought.append((model, model.class_names(output_size(model, backend))))
    names = [model.name for model, _ in brought]
    clash = sorted({name for name in names if names.count(name) > 1 or name in taggers})
    if clash:
        raise ConfigurationError(f"model name(s) {', '.join(clash)} used twice; name a model with NAME=PATH")
    return brought
