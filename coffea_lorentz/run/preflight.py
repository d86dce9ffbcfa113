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

__all__ = ["check_taggers", "torch_hashes", "served_hashes"]


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


def served_hashes(url: str, taggers: Sequence[str], batch_config: BatchConfig, *, server_wait_s: float) -> dict[str, str]:
    """Check the server before any chunk (one line per problem); tagger → served model SHA-256."""
    from ..infer.triton_client import inspect_served_models

    served = inspect_served_models(url, list(taggers), max_batch_size=batch_config.max_batch_size,
                                   server_wait_s=min(server_wait_s, 30.0))
    return {name: served[name].sha256 or f"unknown:{name}" for name in taggers}
