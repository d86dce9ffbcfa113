"""``coffea-lorentz serve``: help text, serving until SIGTERM, no server left behind."""

from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from coffea_lorentz.cli import serve as serve_command
from coffea_lorentz.testing import server_unavailable_reason

needs_server = pytest.mark.skipif(
    server_unavailable_reason() is not None, reason=f"no local Triton server: {server_unavailable_reason()}"
)

#: Runs the serve subcommand alone, so the test does not depend on the other subcommands.
_DRIVER = """
import argparse, sys
from coffea_lorentz.cli import serve
parser = argparse.ArgumentParser(prog="coffea-lorentz")
serve.register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coffea-lorentz")
    serve_command.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_help_lists_options(capsys):
    with pytest.raises(SystemExit) as raised:
        _parser().parse_args(["serve", "--help"])
    assert raised.value.code == 0
    text = capsys.readouterr().out
    for option in ("--repository", "--tagger", "--host", "--http-port", "--grpc-port", "--metrics-port", "--gpu"):
        assert option in text


def test_repository_and_tagger_are_exclusive(capsys):
    with pytest.raises(SystemExit) as raised:
        _parser().parse_args(["serve", "--repository", "r", "--tagger", "identity"])
    assert raised.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def _gone(pid: int, timeout_s: float) -> bool:
    """Whether process ``pid`` has exited (a zombie counts as exited) within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def _start_cli(tmp_path, *options: str) -> tuple[subprocess.Popen, int, list[int], str]:
    """Start ``serve --tagger identity`` on free ports; returns the CLI process, the server pid,
    the pids of the server's children and what it printed, once the CLI says the server is ready."""
    command = [
        sys.executable, "-c", _DRIVER, "serve", "--tagger", "identity", "--output", str(tmp_path / "repo"),
        "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--threads", "1", *options,
    ]  # fmt: skip
    cli = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in cli.stdout], daemon=True).start()
    output = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert cli.poll() is None, "".join(output)
            continue
        output.append(line)
        if "Ctrl-C to stop" in line:
            break
    text = "".join(output)
    match = re.search(r"ready in [\d.]+ s \(pid (\d+)\)", text)
    assert match, text
    assert re.search(r"gRPC\s+grpc://127\.0\.0\.1:\d+ .*--server grpc://127\.0\.0\.1:\d+", text), text
    server_pid = int(match.group(1))
    children = [child.pid for child in psutil.Process(server_pid).children(recursive=True)]
    return cli, server_pid, children, text


@needs_server
@pytest.mark.slow
def test_sigterm_stops_server_cleanly(tmp_path):
    cli, server_pid, children, text = _start_cli(tmp_path, "--host", "0.0.0.0")
    cli.send_signal(signal.SIGTERM)  # first, so that a failed check below leaves no server behind
    assert cli.wait(timeout=60) == 0
    warning = [line for line in text.splitlines() if "warning" in line]
    assert len(warning) == 1 and warning[0].startswith(
        "coffea-lorentz serve: warning: listening on 0.0.0.0, open to the network: gRPC takes calls from anyone"), text
    assert children, "the python backend runs its model in a stub process"
    for pid in (server_pid, *children):
        assert _gone(pid, timeout_s=10), f"process {pid} still alive after the CLI stopped"


@needs_server
@pytest.mark.slow
def test_killed_cli_leaves_no_orphan_server(tmp_path):
    cli, server_pid, children, text = _start_cli(tmp_path)
    os.kill(cli.pid, signal.SIGKILL)
    cli.wait(timeout=10)
    assert "warning" not in text, "a server on loopback opens nothing to the network"
    for pid in (server_pid, *children):
        alive = not _gone(pid, timeout_s=30)
        if alive:
            os.killpg(server_pid, signal.SIGKILL)
        assert not alive, f"process {pid} outlived the killed CLI"


def test_build_only_writes_gpu_libtorch_repository(tmp_path, capsys):
    args = _parser().parse_args(
        ["serve", "--tagger", "identity", "--backend", "pytorch_libtorch", "--gpu", "--build-only",
         "--output", str(tmp_path / "gpu_repo")]
    )  # fmt: skip
    assert args.func(args) == 0
    config = (tmp_path / "gpu_repo" / "identity" / "config.pbtxt").read_text()
    assert 'platform: "pytorch_libtorch"' in config and "kind: KIND_GPU" in config
    assert not (tmp_path / "gpu_repo" / "identity" / "1" / "model.py").exists()
    assert "model repository written to" in capsys.readouterr().out
