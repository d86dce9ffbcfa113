"""Every Python block of README.md, run as written, in order, against a real Triton server.

The blocks are read from README.md itself (no copy lives here) and executed one after the other in
one namespace, as a reader pasting them into one session would, in a temporary folder that holds
what the README says the reader has made:

- ``ttbar.root`` and ``qcd.root``: ``coffea-lorentz generate pfnano --process ttbar --pthat-min 400
  --events 100 --seed 1`` (and ``qcd``, seed 2), made here with the same settings through
  :func:`coffea_lorentz.generate.pfnano.generate_pfnano`;
- ``tagged``: the output of ``coffea-lorentz run ttbar.root qcd.root --output tagged``, made here
  with :func:`coffea_lorentz.run.run_tagging` on the same server.

The one substitution: the placeholder address :data:`PLACEHOLDER_SERVER` becomes the test server's.
Where the README shows what a block prints (a plain ``` block right after it, introduced by
"prints"), the printed text must end with exactly that (coffea's progress bars come before it). Matplotlib draws off-screen (Agg).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from coffea_lorentz.testing import require_triton, server_unavailable_reason, triton_server_fixture

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
#: The server address the README's blocks use; replaced by the test server's.
PLACEHOLDER_SERVER = "grpc://localhost:8001"
#: The generated files the README's example reads: file name → (process, pT-hat minimum in GeV, seed).
SAMPLES = {"ttbar.root": ("ttbar", 400.0, 1), "qcd.root": ("qcd", 400.0, 2)}
EVENTS = 100

triton_server = triton_server_fixture(taggers=("lloca", "reweight_fsr"), scope="module", skip_if_unavailable=not require_triton())

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n(?:\s*\n)*(prints[^\n]*\n\s*```\n(.*?)^```)?", re.M | re.S)


def python_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line number, code, the text the README says it prints or None) of every ```python block."""
    blocks = []
    for match in _FENCE.finditer(text):
        if match.group(1) == "python":
            line = text.count("\n", 0, match.start()) + 2
            blocks.append((line, match.group(2), match.group(4)))
    return blocks


def test_the_readme_has_python_blocks():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 2
    assert any(PLACEHOLDER_SERVER in code for _, code, _ in blocks)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, triton_server) -> Path:
    """A folder with the README's ttbar.root, qcd.root and tagged run."""
    pytest.importorskip("pythia8mc", reason="Pythia 8 is not installed (the 'generate' extra makes the README's files)")
    from coffea_lorentz.generate.pfnano import generate_pfnano
    from coffea_lorentz.generate.pythia import GeneratorConfig
    from coffea_lorentz.run import RunConfig, run_tagging

    folder = tmp_path_factory.mktemp("readme")
    for name, (process, pthat_min_gev, seed) in SAMPLES.items():
        generate_pfnano(folder / name, generator=GeneratorConfig(process=process, pthat_min_gev=pthat_min_gev),
                        n_events=EVENTS, seed=seed)
    config = RunConfig(taggers=("lloca",), server_url=f"grpc://{triton_server.grpc_url}", n_workers=0, progress=False)
    summary = run_tagging([folder / name for name in SAMPLES], folder / "tagged", config)
    assert summary.complete
    return folder


def test_every_python_block_runs_as_written(workdir, triton_server, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(workdir)
    server = f"grpc://{triton_server.grpc_url}"
    namespace: dict = {"__name__": "__main__"}
    for line, code, shown in python_blocks(README.read_text()):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code.replace(PLACEHOLDER_SERVER, server), f"README.md, block at line {line}", "exec"), namespace)
        if shown is not None:
            assert printed.getvalue().endswith(shown), f"README.md line {line}: the block printed\n{printed.getvalue()}"
    assert (workdir / "top_score.png").stat().st_size > 0
    histogram = namespace["output"]["score"]
    assert sorted(histogram.axes["dataset"]) == ["qcd", "ttbar"]
    assert len(namespace["scores"]) == EVENTS


def _serving_securely_commands() -> tuple[list[str], list[str]]:
    """The ``serve`` and ``run`` commands of the first block of README.md's "Serving securely", as
    argument lists with their optional ``[…]`` parts kept (mutual TLS) and ``\\`` continuations joined."""
    import shlex

    text = README.read_text()
    section = text[text.index("### Serving securely"):]
    block = section[section.index("```bash\n") + len("```bash\n"):]
    block = re.sub(r"\\\n\s*", " ", block[:block.index("```")]).replace("[", "").replace("]", "")
    commands = [shlex.split(line.split("#", 1)[0]) for line in block.splitlines()
                if line.startswith(".venv/bin/coffea-lorentz ")]
    (serve,) = [c[1:] for c in commands if c[1] == "serve"]
    (run,) = [c[1:] for c in commands if c[1] == "run"]
    return serve, run


@pytest.mark.skipif(not require_triton() and server_unavailable_reason() is not None,
                    reason=f"no local Triton server: {server_unavailable_reason()}")
def test_serving_securely_commands_run_as_written(tmp_path, monkeypatch):
    """The README's TLS + token ``serve`` and ``run``, as written (mutual TLS included), in a folder
    holding the files they name (a CA and certificates made here, a token, a small fileset); the one
    substitution: ``triton.example:8001`` becomes the address the server was given."""
    import json
    import signal
    import subprocess
    import sys

    pytest.importorskip("cryptography", reason="the test CA is made with the cryptography package (test extra)")
    sys.path.insert(0, str(Path(__file__).parent / "infer"))
    from certificates import make_certificates

    from coffea_lorentz.serve import free_port
    from coffea_lorentz.testing import write_pfnano_fileset

    serve, run = _serving_securely_commands()
    monkeypatch.chdir(tmp_path)
    pki = make_certificates(tmp_path / "pki")
    files = {"server.pem": pki.server_cert, "server-key.pem": pki.server_key, "ca.pem": pki.ca,
             "client.pem": pki.client_cert, "client-key.pem": pki.client_key}
    for name, source in files.items():
        Path(name).write_bytes(source.read_bytes())
    Path("token.txt").write_text("readme-token-5f2c\n")
    Path("fileset.json").write_text(json.dumps(write_pfnano_fileset(tmp_path / "inputs", 1)))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "coffea_lorentz.cli", *serve, "--grpc-port", str(port),
                               "--http-port", "0", "--metrics-port", "0", "--output", str(tmp_path / "repository")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    printed = []
    try:
        for line in server.stdout:
            printed.append(line)
            if "Ctrl-C to stop" in line:
                break
        assert "Ctrl-C to stop" in "".join(printed), "".join(printed)
        run = [part.replace("triton.example:8001", f"localhost:{port}") for part in run]
        result = subprocess.run([sys.executable, "-m", "coffea_lorentz.cli", *run, "--no-progress"],
                                capture_output=True, text=True, timeout=600)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    text = "".join(printed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "open to the network" in text and "gRPC" not in text.split("open to the network:", 1)[1].split(".")[0]
    assert list((tmp_path / "tagged").rglob("*.root")), "the run wrote its chunk files"
    assert "readme-token-5f2c" not in text + result.stdout + result.stderr
