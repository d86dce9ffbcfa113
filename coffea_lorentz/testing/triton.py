"""A real local Triton server as a pytest fixture."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from ..errors import ServerStartError
from ..serve import ServerConfig, TritonServer, server_directory

__all__ = ["server_unavailable_reason", "triton_server_fixture", "require_triton"]


def server_unavailable_reason(server_env: str | Path | None = None) -> str | None:
    """Why no local Triton server can start (missing server environment), or None if one can."""
    try:
        server_directory(server_env)
    except ServerStartError as err:
        return str(err)
    return None


def triton_server_fixture(
    taggers: Sequence[str] | Callable[[], Mapping] = ("identity",),
    *,
    scope: str = "session",
    name: str | None = None,
    skip_if_unavailable: bool = True,
    startup_timeout_s: float = 120.0,
    server_env: str | Path | None = None,
    intra_op_threads: int = 1,
    **repository_options,
):
    """A pytest fixture yielding a running :class:`TritonServer`.

    ``taggers`` is a sequence of registry names (served with :func:`coffea_lorentz.models.pretrained`
    weights) or a callable returning the ``{name: module or model.pt path}`` mapping for
    :func:`repository.build_repository` (called when the fixture is first used, not at import).
    ``repository_options`` go to :func:`repository.build_repository`; ``intra_op_threads``
    defaults to 1 to keep test servers light.
    """
    import pytest

    @pytest.fixture(scope=scope, name=name)
    def _triton_server(tmp_path_factory) -> Iterator[TritonServer]:
        from ..models import pretrained
        from ..repository import build_repository

        reason = server_unavailable_reason(server_env)
        if reason is not None:
            if skip_if_unavailable:
                pytest.skip(f"no local Triton server: {reason}")
            pytest.fail(f"no local Triton server: {reason}")
        mapping = taggers() if callable(taggers) else {tagger: pretrained(tagger) for tagger in taggers}
        repository = build_repository(
            tmp_path_factory.mktemp("triton") / "model_repository",
            mapping,
            intra_op_threads=intra_op_threads,
            **repository_options,
        )
        config = ServerConfig(repository=repository, server_env=server_env, startup_timeout_s=startup_timeout_s)
        with TritonServer(config) as server:
            yield server

    return _triton_server


def require_triton() -> bool:
    """True where a missing Triton server must fail the tests instead of skipping them (``make test``)."""
    return os.environ.get("COFFEA_LORENTZ_REQUIRE_TRITON") == "1"
