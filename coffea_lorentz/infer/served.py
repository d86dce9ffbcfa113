"""What a Triton server serves, checked before any data is read: the preflight.

:func:`inspect_served_models` checks that a server (or every server of a list) serves each model
with the signature below and a large enough ``max_batch_size``, and returns what it learned as
:class:`ServedModel`, including the ``model_sha256`` that
:func:`coffea_lorentz.repository.build_repository` writes into each ``config.pbtxt``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import ConfigurationError, ModelMismatchError, ServerError
from .outage import _MODEL_FAILED, _PERMANENT, _classify, _NotReady, _one_line, _Outage, _Remembering, _status
from .security import BearerToken, TlsConfig, open_client, resolve_tls, security_failure
from .urls import split_urls

__all__ = ["ServedModel", "Signature", "inspect_served_models", "spec_signature", "EXPECTED_INPUTS", "OUTPUT_NAME",
           "SHA256_PARAMETER", "ZOO_SIGNATURE"]

#: The inputs every served tagger takes: name → (datatype, shape with -1 for B and N).
EXPECTED_INPUTS: dict[str, tuple[str, tuple[int, ...]]] = {"p4": ("FP32", (-1, -1, 4)), "mask": ("BOOL", (-1, -1))}
#: The output every served tagger returns.
OUTPUT_NAME = "score"
#: Key of the ``config.pbtxt`` parameter holding the sha256 of the served ``model.pt``.
SHA256_PARAMETER = "model_sha256"


@dataclass(frozen=True)
class Signature:
    """The tensors a served model takes and the output the client reads.

    Attributes:
        inputs: (name, datatype, shape) per input; the shape includes the batch axis, -1 where an
            axis may take any size (the batch; N or P of a variable length).
        output: the output tensor read, float32 [B, n_outputs].
    """

    inputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    output: str

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.inputs)


#: The zoo's served signature (:data:`EXPECTED_INPUTS`, :data:`OUTPUT_NAME`).
ZOO_SIGNATURE = Signature(inputs=tuple((name, dtype, shape) for name, (dtype, shape) in EXPECTED_INPUTS.items()),
                          output=OUTPUT_NAME)


def spec_signature(spec) -> Signature:
    """The signature of a model described by a :class:`~coffea_lorentz.modelspec.ModelSpec`: FP32
    inputs [B, C, P] or [B, P, C] (P -1 for a variable length), its first output."""
    inputs = tuple((item.name, "FP32", tuple([-1, *item.shape(item.length or -1)])) for item in spec.inputs)
    return Signature(inputs=inputs, output=spec.outputs[0])


def _check_metadata(metadata: dict, where: str, signature: Signature = ZOO_SIGNATURE) -> int:
    """Compare a served signature (``get_model_metadata(as_json=True)``) with ``signature``; returns
    the output's length per jet, raises :class:`ModelMismatchError` naming ``where`` and the input."""
    inputs = {entry["name"]: entry for entry in metadata.get("inputs", [])}
    for name, datatype, shape in signature.inputs:
        if name not in inputs:
            raise ModelMismatchError(f"{where}: no input {name!r}; it has {sorted(inputs)}")
        got_type = inputs[name]["datatype"]
        got_shape = tuple(int(d) for d in inputs[name]["shape"])
        fits = got_type == datatype and len(got_shape) == len(shape) and all(
            got == want or got == -1 for got, want in zip(got_shape[1:], shape[1:]) if want != -1)
        if not fits:
            raise ModelMismatchError(
                f"{where}: input {name!r} is {got_type} {list(got_shape)}, expected {datatype} {list(shape)}"
            )
        fixed = [(axis, got) for axis, (got, want) in enumerate(zip(got_shape, shape)) if axis and want == -1 and got != -1]
        if fixed and signature is not ZOO_SIGNATURE:
            axis, size = fixed[0]
            raise ModelMismatchError(f"{where}: input {name!r} takes exactly {size} objects on axis {axis} "
                                     f"({list(got_shape)}); give the spec a fixed length {size}")
    extra = sorted(set(inputs) - set(signature.input_names))
    if extra and signature is not ZOO_SIGNATURE:
        raise ModelMismatchError(f"{where}: inputs {extra} are not in the spec (it builds {list(signature.input_names)})")
    outputs = {entry["name"]: entry for entry in metadata.get("outputs", [])}
    output = signature.output
    if output not in outputs:
        raise ModelMismatchError(f"{where}: no output {output!r}; it has {sorted(outputs)}")
    out = outputs[output]
    shape = [int(d) for d in out["shape"]]
    if out["datatype"] != "FP32" or len(shape) != 2 or shape[-1] < 1:
        raise ModelMismatchError(
            f"{where}: output {output!r} is {out['datatype']} {shape}, expected FP32 [-1, n_classes]"
        )
    return shape[-1]


def _served_models(client, timeout_s: float) -> dict[str, list[dict]]:
    """The server's repository index: model name → its entries (``version``, ``state``, ``reason``)."""
    index = client.get_model_repository_index(as_json=True, client_timeout=timeout_s)
    served: dict[str, list[dict]] = {}
    for entry in index.get("models", []):
        served.setdefault(entry["name"], []).append(entry)
    return served


def _describe_served(served: dict[str, list[dict]]) -> str:
    ready = sorted(name for name, entries in served.items() if any(e.get("state") == "READY" for e in entries))
    return ", ".join(ready) if ready else "no ready model"


def _config_sha256(config: dict) -> str | None:
    """``parameters["model_sha256"]`` of a model config (``get_model_config(as_json=True)["config"]``)."""
    value = config.get("parameters", {}).get(SHA256_PARAMETER, {}).get("string_value")
    return value or None


@dataclass(frozen=True, kw_only=True)
class ServedModel:
    """What a Triton server says about one served tagger.

    Attributes:
        name: served model name.
        version: the ready version the server answers with (``"1"`` for repositories built here).
        max_batch_size: most jets per request the model accepts (``config.pbtxt``).
        n_classes: length of the ``score`` output per jet.
        sha256: hex sha256 of the served ``model.pt`` (``model_sha256`` parameter of the config);
            None when the repository was not built by :func:`coffea_lorentz.repository.build_repository`.
    """

    name: str
    version: str
    max_batch_size: int
    n_classes: int
    sha256: str | None


def _inspect_model(client, url: str, name: str, served: dict[str, list[dict]], *, max_batch_size: int | None,
                   timeout_s: float, signature: Signature = ZOO_SIGNATURE) -> ServedModel:
    where = f"model {name!r} at Triton server {url}"
    ready = [entry for entry in served.get(name, []) if entry.get("state") == "READY"]
    if not ready:
        state = ""
        if name in served:
            entry = served[name][0]
            state = f" (it is {entry.get('state', 'UNKNOWN')}" + (f": {entry['reason']}" if entry.get("reason") else "") + ")"
        raise ConfigurationError(f"Triton server {url} does not serve a ready model {name!r}{state}; it serves: {_describe_served(served)}")
    metadata = client.get_model_metadata(name, as_json=True, client_timeout=timeout_s)
    try:
        n_classes = _check_metadata(metadata, where, signature)
    except ModelMismatchError as err:
        raise ConfigurationError(str(err)) from None
    config = client.get_model_config(name, as_json=True, client_timeout=timeout_s).get("config", {})
    served_batch = int(config.get("max_batch_size", 0))
    if served_batch < 1:
        raise ConfigurationError(f"{where}: max_batch_size is {served_batch}; the client needs a batching model (>= 1)")
    if max_batch_size is not None and max_batch_size > served_batch:
        raise ConfigurationError(
            f"{where}: batch size {max_batch_size} jets is above the served max_batch_size {served_batch}"
        )
    versions = sorted((str(entry.get("version", "")) for entry in ready), key=lambda v: (len(v), v))
    return ServedModel(name=name, version=versions[-1], max_batch_size=served_batch, n_classes=n_classes,
                       sha256=_config_sha256(config))


def inspect_served_models(
    url: str,
    models: Sequence[str],
    *,
    max_batch_size: int | None = None,
    timeout_s: float = 10.0,
    server_wait_s: float = 0.0,
    signatures: Mapping[str, Signature] | None = None,
    tls: TlsConfig | None = None,
    token: BearerToken | None = None,
) -> dict[str, ServedModel]:
    """Check, before a run, that the server at ``url`` serves every one of ``models`` as the client needs.

    Reads the server's readiness, its repository index, and each model's metadata and config.
    With several servers (``url`` a comma-separated list) every server that answers must pass, and
    all must serve the same model (``model_sha256``, ``n_classes``); servers that do not answer
    within ``server_wait_s`` while another does are named in a :class:`RuntimeWarning` (the client
    keeps trying them during the run). The returned ``max_batch_size`` is the smallest served one.

    Args:
        url: gRPC address, ``grpc://HOST:PORT`` or ``HOST:PORT``, or several separated by commas.
        models: served model names (tagger names).
        max_batch_size: jets per request the run will send; checked against each served model's
            ``max_batch_size``. None skips the check.
        timeout_s: deadline of each call to the server, in seconds.
        server_wait_s: how long to keep retrying an unreachable or unready server, in seconds
            (0: one try).
        signatures: model name → the :class:`Signature` it must have (a model brought with its
            spec: :func:`spec_signature`); the others must have :data:`ZOO_SIGNATURE`.
        tls: TLS of the connections (:func:`~coffea_lorentz.infer.security.resolve_tls`: ``grpcs://``
            always means TLS).
        token: bearer token sent with every call.

    Returns:
        model name → :class:`ServedModel`, in the order of ``models``.

    Raises:
        ConfigurationError: a model is not served (the message lists those that are), its signature
            differs from the client's, ``max_batch_size`` is above the served one, or two servers
            serve different models; the server speaks TLS and the URL plaintext or the reverse, its
            certificate is not trusted, it wants a client certificate, or it refused the token
            (:func:`~coffea_lorentz.infer.security.security_failure`, never retried).
        ServerError: ``url`` is malformed, or no server answered within ``server_wait_s``.
    """
    addresses = split_urls(url)
    security = {"tls": resolve_tls(url, tls), "token": token}
    if len(addresses) == 1:
        return _inspect_server(addresses[0], models, max_batch_size=max_batch_size, timeout_s=timeout_s,
                               server_wait_s=server_wait_s, signatures=signatures, **security)
    outage = _Outage(server_wait_s=float(server_wait_s), backoff_ms=200.0, max_backoff_ms=5_000.0, jitter_ms=100.0)
    answers: dict[str, dict[str, ServedModel]] = {}
    errors: dict[str, str] = {}
    while True:
        for address in addresses:
            if address in answers:
                continue
            try:
                answers[address] = _inspect_server(address, models, max_batch_size=max_batch_size,
                                                   timeout_s=outage.probe_timeout_s(timeout_s), server_wait_s=0.0,
                                                   signatures=signatures, **security)
            except ConfigurationError:
                raise
            except ServerError as err:
                errors[address] = _one_line(err)
        if answers:
            break
        delay_s = outage.failed("; ".join(errors.values()))
        if delay_s is None:
            raise ServerError(f"no Triton server of {','.join(addresses)} answered the preflight within "
                              f"server_wait_s={server_wait_s:g}: " + "; ".join(errors.values()))
        time.sleep(delay_s)
    silent = [address for address in addresses if address not in answers]
    if silent:
        import warnings

        warnings.warn(f"Triton servers {', '.join(silent)} did not answer the preflight; the run uses "
                      f"{', '.join(answers)} and retries the others: " + "; ".join(errors[a] for a in silent),
                      RuntimeWarning, stacklevel=2)
    return {name: _merge_served(name, {address: answer[name] for address, answer in answers.items()})
            for name in models}


def _merge_served(name: str, per_server: dict[str, ServedModel]) -> ServedModel:
    """One :class:`ServedModel` for model ``name`` served by several servers (address → what it says)."""
    (first_address, first), *others = per_server.items()
    for address, served in others:
        if (served.sha256, served.n_classes) != (first.sha256, first.n_classes):
            raise ConfigurationError(
                f"model {name!r}: Triton server {address} serves model_sha256 {served.sha256} with {served.n_classes} "
                f"classes, server {first_address} {first.sha256} with {first.n_classes}; every server must serve "
                "the same model"
            )
    smallest = min(served.max_batch_size for served in per_server.values())
    return ServedModel(name=name, version=first.version, max_batch_size=smallest, n_classes=first.n_classes,
                       sha256=first.sha256)


def _inspect_server(address: str, models: Sequence[str], *, max_batch_size: int | None, timeout_s: float,
                    server_wait_s: float, signatures: Mapping[str, Signature] | None = None,
                    tls: TlsConfig | None = None, token: BearerToken | None = None) -> dict[str, ServedModel]:
    """:func:`inspect_served_models` for one server at ``address`` (``HOST:PORT``)."""
    if tls is not None:
        tls.check_files()
    outage = _Outage(server_wait_s=float(server_wait_s), backoff_ms=200.0, max_backoff_ms=5_000.0, jitter_ms=100.0)
    answers: dict[tuple, object] = {}  # what earlier tries were told: a refused call does not undo the others
    while True:
        client = _Remembering(open_client(address, tls=tls, token=token), answers)
        try:
            probe_s = outage.probe_timeout_s(timeout_s)
            if not client.is_server_ready(client_timeout=probe_s):
                raise _NotReady("server not ready")
            served = _served_models(client, timeout_s)
            return {
                name: _inspect_model(client, address, name, served, max_batch_size=max_batch_size, timeout_s=timeout_s,
                                     signature=(signatures or {}).get(name, ZOO_SIGNATURE))
                for name in models
            }
        except Exception as err:  # noqa: BLE001 - sorted into transient and permanent below
            if isinstance(err, ConfigurationError):
                raise
            if _status(err) != "RESOURCE_EXHAUSTED":
                answers.clear()  # only a rate limit's refusal leaves the earlier answers standing
            reason = security_failure(err, address, tls=tls, token=token)
            if reason is not None:
                raise ConfigurationError(reason) from None
            kind = _classify(err)
            if kind in (_PERMANENT, _MODEL_FAILED):
                if isinstance(err, ConfigurationError):
                    raise
                raise ServerError(f"Triton server {address}: preflight failed: {_one_line(err)}") from None
            delay_s = outage.failed(err)
            if delay_s is None:
                raise outage.gave_up(address, None, "preflight (readiness, model index, metadata)") from None
        finally:
            client.close()
        time.sleep(delay_s)
