"""TLS, mutual TLS and bearer tokens against real Triton servers: a CA and certificates made here,
servers started with Triton's own TLS and restricted-protocol flags, the client, its preflight and
``coffea-lorentz run`` end to end. Every mismatch is one line, at once, never a silent downgrade."""

from __future__ import annotations

import contextlib
import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from coffea_lorentz.batch import Batch
from coffea_lorentz.errors import ConfigurationError
from coffea_lorentz.infer import BackendSpec, TritonBackend, inspect_served_models
from coffea_lorentz.infer.security import TOKEN_ENV, BearerToken, TlsConfig, resolve_tls
from coffea_lorentz.infer.server_statistics import read_server_statistics
from coffea_lorentz.models import pretrained
from coffea_lorentz.repository import build_repository
from coffea_lorentz.serve import ServerConfig, TritonServer
from coffea_lorentz.testing import require_triton, server_unavailable_reason, write_pfnano_fileset

pytest.importorskip("cryptography", reason="the test CA is made with the cryptography package (test extra)")
from certificates import make_certificates  # noqa: E402 - after the skip above

needs_servers = pytest.mark.skipif(server_unavailable_reason() is not None and not require_triton(),
                                   reason=f"no local Triton server: {server_unavailable_reason()}")
TAGGER = "lorentznet"
TOKEN = "tok-7d1f0c9e5b3a4c28"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def servers(tmp_path_factory, pki):
    """Four real servers on one repository: plaintext, TLS, mutual TLS, TLS + a required token."""
    repository = build_repository(tmp_path_factory.mktemp("models") / "models", {TAGGER: pretrained(TAGGER)})
    tls = {"grpc_tls_cert": pki.server_cert, "grpc_tls_key": pki.server_key}
    configs = {"plain": {}, "tls": tls, "mtls": {**tls, "grpc_tls_client_ca": pki.ca},
               "token": {**tls, "grpc_token": TOKEN}}
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(TritonServer(ServerConfig(repository=repository, **config)))
               for name, config in configs.items()}


def _batches() -> list[Batch]:
    rng = np.random.default_rng(3)
    return [Batch(p4=rng.uniform(1, 2, (n, 16, 4)).astype(np.float32), mask=rng.uniform(size=(n, 16)) < 0.8,
                  jet_index=np.arange(n)) for n in (20, 5)]


def _scores(url: str, **security) -> np.ndarray:
    backend = TritonBackend(url, TAGGER, server_wait_s=5.0, **security)
    try:
        return np.concatenate(backend.infer_batches(_batches()))
    finally:
        backend.close()


def test_the_scheme_decides_tls_and_tokens_never_show(tmp_path):
    assert resolve_tls("grpcs://h:1", None) == TlsConfig()  # the system's roots
    assert resolve_tls("grpc://h:1", None) is None and resolve_tls("h:1", None) is None
    assert resolve_tls("h:1", TlsConfig(ca="ca.pem")) == TlsConfig(ca="ca.pem")
    with pytest.raises(ConfigurationError, match="write grpcs://"):
        resolve_tls("grpc://h:1", TlsConfig(ca="ca.pem"))
    with pytest.raises(ConfigurationError, match="mixes"):
        resolve_tls("grpc://a:1,grpcs://b:1", None)
    with pytest.raises(ConfigurationError, match="--tls-key"):
        TlsConfig(cert="client.pem")
    with pytest.raises(ConfigurationError, match="--tls-ca .*missing.pem"):
        TlsConfig(ca=str(tmp_path / "missing.pem")).check_files()
    (tmp_path / "token").write_text(f"  {TOKEN}\n")
    token = BearerToken.from_file(tmp_path / "token")
    assert token.value == TOKEN and token.headers()["authorization"] == f"Bearer {TOKEN}"
    backend = TritonBackend("grpcs://127.0.0.1:1", TAGGER, token=token)
    assert TOKEN not in repr(token) + str(token) + repr(backend.__dict__)
    spec = BackendSpec.make(TAGGER, kind="triton", url="grpcs://h:1", tls=TlsConfig(ca="ca.pem"), token=token)
    assert pickle.loads(pickle.dumps(spec)) == spec and hash(spec) == hash(pickle.loads(pickle.dumps(spec)))
    assert TOKEN not in repr(spec)


@needs_servers
@pytest.mark.slow
def test_tls_mtls_and_token_give_the_plaintext_scores(servers, pki):
    expected = _scores(servers["plain"].grpc_url)
    tls = TlsConfig(ca=str(pki.ca))
    np.testing.assert_allclose(_scores(f"grpcs://{servers['tls'].grpc_url}", tls=tls), expected, atol=1e-6, rtol=0)
    localhost = f"grpcs://localhost:{servers['tls'].grpc_port}"  # the certificate names localhost too
    np.testing.assert_allclose(_scores(localhost, tls=tls), expected, atol=1e-6, rtol=0)
    mutual = TlsConfig(ca=str(pki.ca), cert=str(pki.client_cert), key=str(pki.client_key))
    np.testing.assert_allclose(_scores(f"grpcs://{servers['mtls'].grpc_url}", tls=mutual), expected, atol=1e-6, rtol=0)
    token = BearerToken(TOKEN)
    url = f"grpcs://{servers['token'].grpc_url}"
    np.testing.assert_allclose(_scores(url, tls=tls, token=token), expected, atol=1e-6, rtol=0)
    assert inspect_served_models(url, [TAGGER], tls=tls, token=token)[TAGGER].n_classes == expected.shape[1]
    # Triton counts a request just after answering it: read until two readings agree.
    assert read_server_statistics(url, [TAGGER], tls=tls, token=token, settle_s=0.2)[TAGGER].requests >= 2
    both = f"grpcs://{servers['tls'].grpc_url},grpcs://{servers['token'].grpc_url}"  # several servers, one TLS setting
    np.testing.assert_allclose(_scores(both, tls=tls, token=token), expected, atol=1e-6, rtol=0)
    assert inspect_served_models(both, [TAGGER], tls=tls, token=token)[TAGGER].n_classes == expected.shape[1]
    server = servers["token"]
    assert TOKEN not in repr(server.config) and TOKEN not in server.log_path.read_text()
    assert any(line.strip().startswith(f"gRPC     grpcs://{server.grpc_url}") and "--token-file" in line
               for line in server.endpoint_lines())


@needs_servers
@pytest.mark.slow
def test_every_mismatch_is_one_line_at_once(servers, pki, tmp_path):
    tls = TlsConfig(ca=str(pki.ca))
    other = make_certificates(tmp_path / "other", ca_name="another CA")
    cases = [
        (f"grpcs://{servers['plain'].grpc_url}", {"tls": tls}, "does not speak TLS"),
        (f"grpc://{servers['tls'].grpc_url}", {}, "speaks TLS but the URL asks for plaintext"),
        (f"grpc://{servers['mtls'].grpc_url}", {}, "speaks TLS but the URL asks for plaintext"),
        (f"grpcs://{servers['tls'].grpc_url}", {"tls": TlsConfig(ca=str(other.ca))}, "not trusted by CA"),
        (f"grpcs://{servers['mtls'].grpc_url}", {"tls": tls}, "requires a client certificate"),
        (f"grpcs://{servers['mtls'].grpc_url}",
         {"tls": TlsConfig(ca=str(pki.ca), cert=str(other.client_cert), key=str(other.client_key))},
         "refused the client certificate .* not signed by a CA the server trusts"),
        (f"grpcs://{servers['token'].grpc_url}", {"tls": tls}, f"without a token .*{TOKEN_ENV}"),
        (f"grpcs://{servers['token'].grpc_url}", {"tls": tls, "token": BearerToken("wrong", source="t.txt")},
         "rejected the token from t.txt"),
    ]
    with pytest.raises(ConfigurationError, match=f"{servers['plain'].grpc_url} does not speak TLS"):
        inspect_served_models(f"grpcs://{servers['tls'].grpc_url},grpcs://{servers['plain'].grpc_url}", [TAGGER],
                              server_wait_s=60.0, tls=tls)
    for url, security, message in cases:
        started = time.monotonic()
        with pytest.raises(ConfigurationError, match=message) as preflight:
            inspect_served_models(url, [TAGGER], server_wait_s=60.0, **security)
        with pytest.raises(ConfigurationError, match=message) as client:
            _scores(url, **security)
        assert time.monotonic() - started < 30.0, f"{url}: retried instead of failing at once"
        for error in (preflight.value, client.value):
            assert "\n" not in str(error) and TOKEN not in str(error) and "wrong" not in str(error)


def _run(fileset: Path, output: Path, *options: str, env: dict | None = None,
         executor: tuple[str, ...] = ("--executor", "iterative")) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "coffea_lorentz.cli", "run", str(fileset), "--output", str(output), "--tagger",
               TAGGER, *executor, "--no-progress", "--chunksize", "3", "--server-wait-s", "60", *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=400, env=env)


def _read_scores(output: Path) -> dict[str, np.ndarray]:
    import uproot

    scores: dict[str, list] = {}
    for path in sorted(output.glob("*/*.root")):
        with uproot.open(path) as file:
            tree = file["Events"]
            for name in tree.keys():
                if name.startswith(f"FatJet_{TAGGER}"):
                    scores.setdefault(f"{path.name}:{name}", []).append(np.asarray(tree[name].array(library="np")))
    return {key: np.concatenate([np.concatenate(list(part)) for part in parts]) for key, parts in scores.items()}


@needs_servers
@pytest.mark.slow
def test_run_over_tls_with_a_token_end_to_end(servers, pki, tmp_path):
    import os

    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps(write_pfnano_fileset(tmp_path / "inputs", 2)))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    secure = f"grpcs://{servers['token'].grpc_url}"
    env = {key: value for key, value in os.environ.items() if key != TOKEN_ENV}

    plain = _run(fileset, tmp_path / "plain", "--server", f"grpc://{servers['plain'].grpc_url}", env=env)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    by_file = _run(fileset, tmp_path / "file", "--server", secure, "--tls-ca", str(pki.ca), "--token-file",
                   str(token_file), env=env, executor=("--workers", "1"))  # a Dask worker checks the server too
    assert by_file.returncode == 0, by_file.stdout + by_file.stderr
    by_env = _run(fileset, tmp_path / "env", "--server", secure, "--tls-ca", str(pki.ca), env={**env, TOKEN_ENV: TOKEN})
    assert by_env.returncode == 0, by_env.stdout + by_env.stderr
    expected = _read_scores(tmp_path / "plain")
    assert expected and all(len(values) for values in expected.values())
    for folder in ("file", "env"):
        got = _read_scores(tmp_path / folder)
        assert got.keys() == expected.keys()
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], atol=1e-6, rtol=0)

    refused = [
        (("--server", secure, "--tls-ca", str(pki.ca)), env, "without a token"),
        (("--server", secure, "--tls-ca", str(pki.ca)), {**env, TOKEN_ENV: "not-the-token"}, "rejected the token"),
        (("--server", f"grpcs://{servers['plain'].grpc_url}", "--tls-ca", str(pki.ca)), env, "does not speak TLS"),
        (("--server", f"grpc://{servers['tls'].grpc_url}"), env, "speaks TLS but the URL asks for plaintext"),
        (("--server", f"grpcs://{servers['mtls'].grpc_url}", "--tls-ca", str(pki.ca)), env,
         "requires a client certificate"),
    ]
    for index, (options, run_env, message) in enumerate(refused):
        output = tmp_path / f"refused{index}"
        started = time.monotonic()
        result = _run(fileset, output, *options, env=run_env)
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        assert result.returncode != 0 and len(lines) == 1 and message in lines[0], result.stdout + result.stderr
        assert time.monotonic() - started < 60.0, "retried instead of failing at once"
        assert not list(output.glob("**/*.root")), "a chunk was written before the refusal"

    for result in (by_file, by_env):
        assert TOKEN not in result.stdout + result.stderr
    for folder in ("file", "env", *(f"refused{i}" for i in range(len(refused)))):
        for path in (tmp_path / folder).rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), f"the token is written in {path}"


@needs_servers
def test_a_token_also_guards_http_while_health_stays_open(servers):
    """Triton's token flag guards gRPC only: the server adds the same check to HTTP, so HTTP is no way around it."""
    import urllib.error
    import urllib.request

    base = f"http://{servers['token'].http_url}"

    def status(path: str, headers: dict | None = None) -> int:
        try:
            with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers or {}), timeout=5) as answer:
                return answer.status
        except urllib.error.HTTPError as err:
            return err.code

    assert status("/v2/health/ready") == 200
    assert status(f"/v2/models/{TAGGER}") == 403 and status("/v2/models/stats") == 403
    assert status(f"/v2/models/{TAGGER}", {"authorization": f"Bearer {TOKEN}"}) == 200
    assert status(f"/v2/models/{TAGGER}", {"authorization": "Bearer wrong"}) == 403
