"""Envoy as the front door of two real Triton servers: TLS with certificates made here, JWTs signed
here (and one static token), a token-bucket rate limit; ``coffea-lorentz run`` through it end to end.

The right token gives the direct run's scores; no token, an expired one, one for another audience,
one signed by another key and plaintext against the TLS listener each stop the run with one line
before any chunk; over the rate limit the run slows (retries > 0) and still completes exactly; with
mutual TLS a client certificate from the CA gives the same scores, none or another CA's one line; no
file the run leaves holds a token.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from coffea_lorentz.envoy import (
    EnvoyConfig,
    EnvoyProxy,
    JwtAuth,
    ListenerTls,
    RateLimit,
    StaticToken,
    Upstream,
    envoy_binary,
    envoy_unavailable_reason,
    main,
    render_envoy_config,
)
from coffea_lorentz.errors import ConfigurationError, InvalidInputError
from coffea_lorentz.infer import inspect_served_models
from coffea_lorentz.infer.security import TOKEN_ENV, BearerToken, TlsConfig, open_client
from coffea_lorentz.models import pretrained
from coffea_lorentz.repository import build_repository
from coffea_lorentz.serve import ServerConfig, TritonServer
from coffea_lorentz.testing import require_triton, server_unavailable_reason, write_pfnano_fileset

pytest.importorskip("cryptography", reason="certificates and JWTs are made with the cryptography package (test extra)")
from envoy_files import make_certificates  # noqa: E402 - after the skip above
from jwt_tokens import SigningKey  # noqa: E402


ROOT = Path(__file__).resolve().parents[2]
needs_envoy = pytest.mark.skipif(envoy_unavailable_reason() is not None,
                                 reason=f"no envoy binary: {envoy_unavailable_reason()}")
needs_servers = pytest.mark.skipif(server_unavailable_reason() is not None and not require_triton(),
                                   reason=f"no local Triton server: {server_unavailable_reason()}")

TAGGER = "identity"
ISSUER = "https://issuer.test"
AUDIENCE = "triton"
N_FILES = 3
STATIC_TOKEN = "static-5f0e9c1d7a2b4e63"


def _config(upstreams=(Upstream.parse("127.0.0.1:18001:18000"),), **options) -> EnvoyConfig:
    return EnvoyConfig(upstreams=tuple(upstreams), **options)


def _validate_with_envoy(text: str, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "envoy.yaml"
    path.write_text(text)
    result = subprocess.run([str(envoy_binary()), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def _manager(config: dict) -> dict:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


# -- the configuration ------------------------------------------------------------------------------


def test_front_door_renders_tls_jwt_and_rate_limit(tmp_path):
    config = _config(tls=ListenerTls(cert="/tls/tls.crt", key="/tls/tls.key", client_ca="/tls/ca.crt"),
                     jwt=JwtAuth(issuer=ISSUER, audiences=(AUDIENCE,), jwks_file="/jwks/jwks.json"),
                     rate_limit=RateLimit(max_tokens=20, tokens_per_fill=10, fill_interval_ms=500))
    rendered = yaml.safe_load(render_envoy_config(config))
    chain = rendered["static_resources"]["listeners"][0]["filter_chains"][0]
    tls = chain["transport_socket"]["typed_config"]
    assert tls["require_client_certificate"] is True
    assert tls["common_tls_context"]["tls_certificates"] == [
        {"certificate_chain": {"filename": "/tls/tls.crt"}, "private_key": {"filename": "/tls/tls.key"}}]
    assert tls["common_tls_context"]["alpn_protocols"] == ["h2"]
    manager = _manager(rendered)
    names = [f["name"] for f in manager["http_filters"]]
    assert names == ["envoy.filters.http.jwt_authn", "envoy.filters.http.local_ratelimit", "envoy.filters.http.router"]
    (provider,) = manager["http_filters"][0]["typed_config"]["providers"].values()
    assert provider["issuer"] == ISSUER and provider["audiences"] == [AUDIENCE]
    assert provider["local_jwks"] == {"filename": "/jwks/jwks.json"} and provider["forward"] is False
    limit = manager["http_filters"][1]["typed_config"]
    assert limit["rate_limited_as_resource_exhausted"] is True
    assert limit["token_bucket"] == {"max_tokens": 20, "tokens_per_fill": 10, "fill_interval": "0.5s"}
    assert limit["filter_enforced"]["default_value"]["numerator"] == 100
    # Neither of the client's token headers goes on to Triton.
    assert manager["route_config"]["request_headers_to_remove"] == [
        "authorization", "triton-grpc-protocol-authorization"]
    # A plain configuration keeps no trace of any of it.
    plain = yaml.safe_load(render_envoy_config(_config()))
    assert "transport_socket" not in plain["static_resources"]["listeners"][0]["filter_chains"][0]
    assert [f["name"] for f in _manager(plain)["http_filters"]] == ["envoy.filters.http.router"]
    assert "request_headers_to_remove" not in _manager(plain)["route_config"]


def test_front_door_refuses_nonsense(tmp_path):
    jwks = json.dumps(SigningKey("k").jwks())
    with pytest.raises(InvalidInputError, match="not both"):
        _config(jwt=JwtAuth(issuer=ISSUER, audiences=(AUDIENCE,), jwks_inline=jwks),
                static_token=StaticToken(token_file="t"))
    with pytest.raises(InvalidInputError, match="exactly one of jwks_file"):
        JwtAuth(issuer=ISSUER, audiences=(AUDIENCE,))
    with pytest.raises(InvalidInputError, match="audience"):
        JwtAuth(issuer=ISSUER, audiences=(), jwks_file="j")
    with pytest.raises(InvalidInputError, match="not a JWKS"):
        JwtAuth(issuer=ISSUER, audiences=(AUDIENCE,), jwks_inline="[]")
    with pytest.raises(InvalidInputError, match="fill_interval_ms"):
        RateLimit(max_tokens=1, fill_interval_ms=10)
    with pytest.raises(ConfigurationError, match="--token-file .*missing"):
        render_envoy_config(_config(static_token=StaticToken(token_file=str(tmp_path / "missing"))))


@needs_envoy
@pytest.mark.parametrize("auth", ["jwt", "static_token"])
def test_real_envoy_accepts_the_front_door(auth, tmp_path):
    pki = make_certificates(tmp_path / "pki")
    (tmp_path / "token").write_text(STATIC_TOKEN)
    security = ({"jwt": JwtAuth(issuer=ISSUER, audiences=(AUDIENCE,), jwks_inline=json.dumps(SigningKey("k").jwks()))}
                if auth == "jwt" else {"static_token": StaticToken(token_file=str(tmp_path / "token"))})
    config = _config(tls=ListenerTls(cert=str(pki.server_cert), key=str(pki.server_key), client_ca=str(pki.ca)),
                     rate_limit=RateLimit(max_tokens=5), **security)
    output = _validate_with_envoy(render_envoy_config(config), tmp_path)
    assert "deprecated" not in output.lower(), output
    assert STATIC_TOKEN not in output


def test_command_line_front_door(tmp_path, capsys):
    (tmp_path / "token").write_text(STATIC_TOKEN + "\n")
    assert main(["127.0.0.1:9001:9000", "--tls-cert", "/tls/tls.crt", "--tls-key", "/tls/tls.key",
                 "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE, "--jwks-file", "/jwks/jwks.json",
                 "--rate-limit-max-tokens", "50", "--rate-limit-tokens-per-fill", "25",
                 "--rate-limit-fill-interval-ms", "100"]) == 0
    printed = capsys.readouterr().out
    expected = _config(upstreams=(Upstream.parse("127.0.0.1:9001:9000"),),
                       tls=ListenerTls(cert="/tls/tls.crt", key="/tls/tls.key"),
                       jwt=JwtAuth(issuer=ISSUER, audiences=(AUDIENCE,), jwks_file="/jwks/jwks.json"),
                       rate_limit=RateLimit(max_tokens=50, tokens_per_fill=25, fill_interval_ms=100))
    assert printed == render_envoy_config(expected)
    assert "# listener: TLS; JWT from issuer https://issuer.test for audience triton; rate limit 250 requests/s" in printed
    # A static token is never printed: it needs --output, and that file is its owner's only.
    with pytest.raises(SystemExit):
        main(["127.0.0.1:9001", "--token-file", str(tmp_path / "token")])
    assert STATIC_TOKEN not in "".join(capsys.readouterr())
    assert main(["127.0.0.1:9001", "--token-file", str(tmp_path / "token"), "--output", str(tmp_path / "e.yaml")]) == 0
    assert STATIC_TOKEN not in "".join(capsys.readouterr())
    assert stat.S_IMODE((tmp_path / "e.yaml").stat().st_mode) == 0o600
    assert f"Bearer {STATIC_TOKEN}" in (tmp_path / "e.yaml").read_text()
    assert STATIC_TOKEN not in repr(StaticToken(token_file=str(tmp_path / "token")))
    for half in (["--tls-cert", "c.pem"], ["--jwt-issuer", ISSUER], ["--jwt-audience", AUDIENCE]):
        with pytest.raises(SystemExit):
            main(["127.0.0.1:9001", *half])


def _readme_envoy_commands() -> list[list[str]]:
    """The ``python -m coffea_lorentz.envoy`` commands of README.md's "Serving securely" section, as argument lists."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Serving securely"):]
    section = section[:section.index("\n## ")]
    joined = re.sub(r"\\\n\s*", " ", section)
    return [line.split("python -m coffea_lorentz.envoy", 1)[1].split("#", 1)[0].split()
            for line in joined.splitlines() if "python -m coffea_lorentz.envoy" in line and line.lstrip().startswith(".venv")]


@needs_envoy
def test_readme_envoy_commands_render_what_envoy_accepts(tmp_path, monkeypatch):
    """The README's Envoy commands, run as written in a folder holding the files they name."""
    commands = _readme_envoy_commands()
    assert commands, "README.md's 'Serving securely' shows no python -m coffea_lorentz.envoy command"
    pki = make_certificates(tmp_path / "pki")
    monkeypatch.chdir(tmp_path)
    for name, source in (("server.pem", pki.server_cert), ("server-key.pem", pki.server_key), ("ca.pem", pki.ca)):
        Path(name).write_bytes(source.read_bytes())
    Path("jwks.json").write_text(json.dumps(SigningKey("k").jwks()))
    for arguments in commands:
        output = Path(arguments[arguments.index("--output") + 1])
        assert main(arguments) == 0
        rendered = yaml.safe_load(output.read_text())
        assert "transport_socket" in rendered["static_resources"]["listeners"][0]["filter_chains"][0]
        assert "envoy.filters.http.jwt_authn" in [f["name"] for f in _manager(rendered)["http_filters"]]
        _validate_with_envoy(output.read_text(), tmp_path / "check")


# -- through the real proxy -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    """The issuer's signing key (its JWKS written to a file), and another key with the same key id."""
    issuer, impostor = SigningKey("issuer-1"), SigningKey("issuer-1")
    jwks = tmp_path_factory.mktemp("jwks") / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))
    return {"issuer": issuer, "impostor": impostor, "jwks": jwks}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two real Triton servers on one repository."""
    if server_unavailable_reason() is not None and not require_triton():
        pytest.skip(f"no local Triton server: {server_unavailable_reason()}")
    repository = build_repository(tmp_path_factory.mktemp("envoy-security") / "models", {TAGGER: pretrained(TAGGER)},
                                  intra_op_threads=1)
    with contextlib.ExitStack() as stack:
        yield tuple(stack.enter_context(TritonServer(ServerConfig(repository=repository))) for _ in range(2))


@pytest.fixture(scope="module")
def fileset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    path = folder / "fileset.json"
    path.write_text(json.dumps(write_pfnano_fileset(folder, N_FILES)))
    return path


def _front_door(servers, pki, keys, **options) -> EnvoyProxy:
    upstreams = tuple(Upstream(host="127.0.0.1", grpc_port=s.grpc_port, http_port=s.http_port) for s in servers)
    security = {"tls": ListenerTls(cert=str(pki.server_cert), key=str(pki.server_key)),
                "jwt": JwtAuth(issuer=ISSUER, audiences=(AUDIENCE,), jwks_file=str(keys["jwks"]))}
    return EnvoyProxy(EnvoyConfig(upstreams=upstreams, listen_host="127.0.0.1", listen_port=0, admin_port=0,
                                  health_check_interval_ms=500, **(security | options)))


def _run(fileset: Path, output: Path, *options: str, env: dict | None = None,
         executor: tuple[str, ...] = ("--executor", "iterative")) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "coffea_lorentz.cli", "run", str(fileset), "--output", str(output), "--tagger",
               TAGGER, *executor, "--no-progress", "--chunksize", "3", "--server-wait-s", "60", *options]
    environment = {key: value for key, value in (env or os.environ).items() if key != TOKEN_ENV}
    return subprocess.run(command, capture_output=True, text=True, timeout=400, env=environment)


def _read_scores(output: Path) -> dict[str, np.ndarray]:
    import uproot

    scores = {}
    for path in sorted(output.glob("*/*.root")):
        with uproot.open(path) as file:
            tree = file["Events"]
            for name in tree.keys():
                if name.startswith(f"FatJet_{TAGGER}"):
                    scores[f"{path.name}:{name}"] = np.asarray(tree[name].array(library="np"))
    return scores


def _assert_same_scores(output: Path, expected: dict[str, np.ndarray]) -> None:
    got = _read_scores(output)
    assert expected and got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(np.concatenate(list(got[key])), np.concatenate(list(expected[key])), atol=1e-6, rtol=0)


def _assert_no_token_in(folder: Path, *tokens: str) -> None:
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for token in tokens:
            assert token.encode() not in data, f"a token is written in {path}"


def _inference_count(server: TritonServer) -> int:
    import urllib.request

    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{TAGGER}/stats", timeout=5) as response:
        return int(json.load(response)["model_stats"][0]["inference_count"])


@pytest.fixture(scope="module")
def direct(servers, fileset, tmp_path_factory) -> dict[str, np.ndarray]:
    """Scores of a plaintext run straight to the first server."""
    output = tmp_path_factory.mktemp("direct") / "out"
    result = _run(fileset, output, "--server", f"grpc://{servers[0].grpc_url}")
    assert result.returncode == 0, result.stdout + result.stderr
    return _read_scores(output)


@needs_envoy
@needs_servers
@pytest.mark.slow
def test_run_through_tls_and_jwt_and_every_refusal(servers, pki, keys, fileset, direct, tmp_path):
    issuer, impostor = keys["issuer"], keys["impostor"]
    good = issuer.token(issuer=ISSUER, audience=AUDIENCE)
    bad = {
        "expired": issuer.token(issuer=ISSUER, audience=AUDIENCE, lifetime_s=-3600),
        "audience": issuer.token(issuer=ISSUER, audience="another-service"),
        "signature": impostor.token(issuer=ISSUER, audience=AUDIENCE),
    }
    for name, token in {"good": good, **bad}.items():
        (tmp_path / f"{name}.jwt").write_text(token + "\n")
    before = [_inference_count(server) for server in servers]
    with _front_door(servers, pki, keys) as proxy:
        # Envoy's readiness checks of the Triton servers are unchanged by the front door.
        assert sorted(proxy.healthy_upstreams()) == sorted(server.grpc_url for server in servers)
        secure = ("--server", proxy.url, "--tls-ca", str(pki.ca))
        assert proxy.url.startswith("grpcs://")

        result = _run(fileset, tmp_path / "secure", *secure, "--token-file", str(tmp_path / "good.jwt"))
        assert result.returncode == 0, result.stdout + result.stderr
        _assert_same_scores(tmp_path / "secure", direct)
        assert all(_inference_count(s) > n for s, n in zip(servers, before)), "Envoy balanced over both servers"

        refused = [
            ((), re.escape("refused the call without a token (UNAUTHENTICATED: Jwt is missing)")),
            (("--token-file", str(tmp_path / "expired.jwt")), "rejected the token from .*expired.jwt "
                                                              r"\(UNAUTHENTICATED: Jwt is expired\)"),
            (("--token-file", str(tmp_path / "audience.jwt")), "rejected the token from .*audience.jwt "
                                                               r"\(PERMISSION_DENIED: Audiences in Jwt are not allowed"),
            (("--token-file", str(tmp_path / "signature.jwt")), "rejected the token from .*signature.jwt "
                                                                r"\(UNAUTHENTICATED: Jwt verification fails"),
        ]
        cases = [(secure + options, message) for options, message in refused]
        cases.append((("--server", f"grpc://{proxy.grpc_url}", "--token-file", str(tmp_path / "good.jwt")),
                      "speaks TLS but the URL asks for plaintext"))
        for index, (options, message) in enumerate(cases):
            output = tmp_path / f"refused{index}"
            started = time.monotonic()
            result = _run(fileset, output, *options)
            lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
            assert result.returncode != 0 and len(lines) == 1 and re.search(message, lines[0]), \
                result.stdout + result.stderr
            assert time.monotonic() - started < 60.0, "retried instead of failing at once"
            assert not list(output.glob("**/*.root")), "a chunk was written before the refusal"
            assert all(token not in lines[0] for token in (good, *bad.values()))
        assert proxy.stats()["http.triton_grpc.jwt_authn.denied"] >= len(refused)
        envoy_log = proxy.log_path.read_bytes()
    assert good not in result.stdout + result.stderr
    for token in (good, *bad.values()):
        assert token.encode() not in envoy_log
    for folder in ["secure", *(f"refused{i}" for i in range(len(cases)))]:
        if (tmp_path / folder).exists():
            _assert_no_token_in(tmp_path / folder, good, *bad.values())


@needs_envoy
@needs_servers
@pytest.mark.slow
def test_over_the_rate_limit_the_run_slows_and_completes(servers, pki, keys, fileset, direct, tmp_path):
    token = keys["issuer"].token(issuer=ISSUER, audience=AUDIENCE)
    (tmp_path / "token.jwt").write_text(token)
    # One request a second, never two at once: the preflight's calls (readiness, model index, metadata,
    # configuration), the two workers' checks and the run's ~20 further calls mostly meet an empty bucket.
    tiny = RateLimit(max_tokens=1, tokens_per_fill=1, fill_interval_ms=1000)
    with _front_door(servers, pki, keys, rate_limit=tiny) as proxy:
        # Over the limit, a gRPC client is told RESOURCE_EXHAUSTED (which it backs off on), not UNAVAILABLE.
        client = open_client(proxy.grpc_url, tls=TlsConfig(ca=str(pki.ca)), token=BearerToken(token))
        try:
            statuses = []
            for _ in range(tiny.max_tokens + 2):
                try:
                    client.is_server_ready(client_timeout=10)
                    statuses.append("OK")
                except Exception as err:  # noqa: BLE001 - the status is what is checked
                    statuses.append(str(err.status()).rsplit(".", 1)[-1])
        finally:
            client.close()
        assert "RESOURCE_EXHAUSTED" in statuses and set(statuses) <= {"OK", "RESOURCE_EXHAUSTED"}, statuses

        result = _run(fileset, tmp_path / "limited", "--server", proxy.url, "--tls-ca", str(pki.ca),
                      "--token-file", str(tmp_path / "token.jwt"), executor=("--workers", "2"))
        assert result.returncode == 0, result.stdout + result.stderr
        limited = proxy.stats()["triton_rate_limit.http_local_rate_limit.rate_limited"]
    _assert_same_scores(tmp_path / "limited", direct)
    assert limited > 1
    (log,) = (tmp_path / "limited" / "_logs").glob("*.log")
    retries = re.search(r"^retries: (\d+) retr", log.read_text(), re.M)
    assert retries and int(retries.group(1)) > 0, log.read_text()
    assert token not in result.stdout + result.stderr
    _assert_no_token_in(tmp_path / "limited", token)


@needs_envoy
@needs_servers
@pytest.mark.slow
def test_mutual_tls_at_the_front_door(servers, pki, keys, fileset, direct, tmp_path):
    """Envoy asks every caller for a client certificate signed by the facility's CA (and a JWT): with
    ``--tls-cert``/``--tls-key`` the run gives the direct run's scores; without a certificate, or with one
    from another CA, it stops with one line before any chunk."""
    stranger = make_certificates(tmp_path / "stranger-pki", ca_name="another CA")
    token = keys["issuer"].token(issuer=ISSUER, audience=AUDIENCE)
    (tmp_path / "token.jwt").write_text(token)
    mutual = ListenerTls(cert=str(pki.server_cert), key=str(pki.server_key), client_ca=str(pki.ca))
    with _front_door(servers, pki, keys, tls=mutual) as proxy:
        secure = ("--server", proxy.url, "--tls-ca", str(pki.ca), "--token-file", str(tmp_path / "token.jwt"))
        result = _run(fileset, tmp_path / "mutual", *secure, "--tls-cert", str(pki.client_cert),
                      "--tls-key", str(pki.client_key))
        assert result.returncode == 0, result.stdout + result.stderr
        _assert_same_scores(tmp_path / "mutual", direct)

        cases = [((), re.escape("requires a client certificate (mutual TLS): give --tls-cert FILE and --tls-key FILE")),
                 (("--tls-cert", str(stranger.client_cert), "--tls-key", str(stranger.client_key)),
                  re.escape(f"refused the client certificate {stranger.client_cert} (mutual TLS)"))]
        for index, (options, message) in enumerate(cases):
            output = tmp_path / f"refused{index}"
            result = _run(fileset, output, *secure, *options)
            lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
            assert result.returncode != 0 and len(lines) == 1 and re.search(message, lines[0]), \
                result.stdout + result.stderr
            assert not list(output.glob("**/*.root")), "a chunk was written before the refusal"
            assert token not in lines[0]
    _assert_no_token_in(tmp_path / "mutual", token)


@needs_envoy
@needs_servers
@pytest.mark.slow
def test_static_token_instead_of_jwts(servers, pki, tmp_path):
    (tmp_path / "token").write_text(STATIC_TOKEN)
    upstreams = tuple(Upstream(host="127.0.0.1", grpc_port=s.grpc_port, http_port=s.http_port) for s in servers)
    config = EnvoyConfig(upstreams=upstreams, listen_host="127.0.0.1", listen_port=0, admin_port=0,
                         tls=ListenerTls(cert=str(pki.server_cert), key=str(pki.server_key)),
                         static_token=StaticToken(token_file=str(tmp_path / "token")))
    tls = TlsConfig(ca=str(pki.ca))
    with EnvoyProxy(config) as proxy:
        (config_file,) = proxy._workdir.glob("*.yaml")
        assert stat.S_IMODE(config_file.stat().st_mode) == 0o600  # it holds the token
        served = inspect_served_models(proxy.url, [TAGGER], tls=tls, token=BearerToken(STATIC_TOKEN))
        assert served[TAGGER].max_batch_size > 0
        with pytest.raises(ConfigurationError, match="without a token .*PERMISSION_DENIED"):
            inspect_served_models(proxy.url, [TAGGER], tls=tls, server_wait_s=30.0)
        with pytest.raises(ConfigurationError, match="rejected the token from t.txt .*PERMISSION_DENIED") as refused:
            inspect_served_models(proxy.url, [TAGGER], tls=tls, token=BearerToken("not-it", source="t.txt"),
                                  server_wait_s=30.0)
        assert "not-it" not in str(refused.value) and STATIC_TOKEN not in str(refused.value)
        assert STATIC_TOKEN.encode() not in proxy.log_path.read_bytes()
