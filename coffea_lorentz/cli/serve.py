"""``coffea-lorentz serve``: run a local Triton server until Ctrl-C or SIGTERM.

Without ``--repository`` a repository is built first (into ``build/model_repository``) from the
``--tagger`` names, with their default weights (see :func:`coffea_lorentz.models.pretrained`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import DEFAULT_TAGGER
from ..errors import InvalidInputError
from ..serve import ServerConfig, TritonServer
from ..server_config import exposure_warning

__all__ = ["register", "run", "run_server"]

DEFAULT_REPOSITORY = Path("build/model_repository")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="run a local Triton server on a model repository",
        description=(
            "Start the bundled Triton server (from the server environment made by "
            "deploy/setup_server_env.sh) on a model repository, print its URLs and serve until "
            "Ctrl-C or SIGTERM. Without --repository, builds one from --tagger into "
            f"{DEFAULT_REPOSITORY}."
        ),
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--repository", type=Path, help="serve this existing model repository")
    source.add_argument(
        "--tagger",
        action="append",
        metavar="NAME|PATH",
        help=f"tagger to serve (repeatable; default: identity and {DEFAULT_TAGGER}): a shipped name, or a model you "
             "bring (a weaver export folder, an .onnx or TorchScript .pt with its spec beside it, a coffea-lorentz "
             "train output folder, or NAME=PATH), "
             "served under its name with its spec's inputs",
    )
    parser.add_argument("--reweighter", action="append", default=[], metavar="NAME|PATH",
                        help="also serve this reweighter's classifier as reweight_<name> (a shipped name such as fsr, "
                             "or the path of a reweight_<name>.pt; repeatable), for run --reweighter --server")
    parser.add_argument("--output", type=Path, default=DEFAULT_REPOSITORY, help="where to build the repository")
    parser.add_argument(
        "--build-only", action="store_true", help="build the repository and exit (e.g. for a GPU server elsewhere)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP port (0 = any free port; default 8000)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (0 = any free port; default 8001)")
    parser.add_argument("--metrics-port", type=int, default=8002, help="metrics port (0 = any free port; default 8002)")
    parser.add_argument("--gpu", action="store_true", help="build the repository with KIND_GPU instances")
    parser.add_argument(
        "--backend",
        choices=("python", "pytorch_libtorch"),
        default="python",
        help="backend of the built repository (the bundled server has python only); pytorch_libtorch builds for an "
             "NGC Triton: the zoo and TorchScript models as pytorch_libtorch, ONNX models as onnxruntime_onnx",
    )
    parser.add_argument("--instances", type=int, default=None,
                        help="model instances per device (default: one per core on CPU, at most 8; 1 per GPU)")
    parser.add_argument("--max-batch-size", type=int, default=1024, help="largest batch in jets (default 1024)")
    parser.add_argument(
        "--max-queue-delay-us", type=int, default=100, help="dynamic batcher wait in microseconds (default 100)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per model instance (default 1; 0 = torch's own)")
    parser.add_argument("--server-env", type=Path, help="server environment (default $COFFEA_LORENTZ_SERVER_ENV or .venv-server)")
    parser.add_argument("--log", type=Path, help="server log file (default next to the repository)")
    parser.add_argument("--startup-timeout-s", type=float, default=180.0, help="seconds to wait for readiness")
    secure = parser.add_argument_group("protecting the gRPC port (see 'Serving securely' in the README)")
    secure.add_argument("--tls-cert", type=Path, metavar="FILE",
                        help="server certificate, PEM: the gRPC port speaks TLS only (clients use grpcs://)")
    secure.add_argument("--tls-key", type=Path, metavar="FILE", help="the server certificate's private key, PEM")
    secure.add_argument("--tls-client-ca", type=Path, metavar="FILE",
                        help="mutual TLS: serve only clients with a certificate signed by this CA (PEM)")
    secure.add_argument("--token-file", type=Path, metavar="FILE",
                        help="every gRPC call must carry this bearer token (clients: --token-file or "
                             "$COFFEA_LORENTZ_TOKEN); the HTTP and metrics ports are not covered")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the repository if needed, then serve it."""
    repository = args.repository
    if repository is None:
        repository = _build(args)
        if args.build_only:
            print(f"model repository written to {repository}")
            return 0
    elif not repository.is_dir():
        raise InvalidInputError(f"--repository {repository}: not a directory")
    config = ServerConfig(
        repository=repository,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        server_env=args.server_env,
        log_path=args.log,
        startup_timeout_s=args.startup_timeout_s,
        grpc_tls_cert=args.tls_cert,
        grpc_tls_key=args.tls_key,
        grpc_tls_client_ca=args.tls_client_ca,
        grpc_token=_read_token(args.token_file),
    )
    return run_server(config)


def _read_token(path: Path | None) -> str | None:
    """The token in ``path`` (white space around it stripped), None without a file."""
    if path is None:
        return None
    from ..infer.security import BearerToken

    return BearerToken.from_file(path).value


def _build(args: argparse.Namespace) -> Path:
    from ..models import pretrained
    from ..repository import build_repository

    from ..reweight.lookup import find_reweighters

    from ..user_model import load_model, looks_like_path

    names = args.tagger or ["identity", DEFAULT_TAGGER]
    taggers = {}
    for name in names:
        if looks_like_path(name):
            model = load_model(name)
            taggers[model.name] = model
        else:
            taggers[name] = pretrained(name)
    for info in find_reweighters(args.reweighter):
        taggers[info.model] = pretrained(info.model, weights=info.weights)
    names = list(taggers)
    print(f"building model repository {args.output} ({', '.join(names)})", file=sys.stderr)
    return build_repository(
        args.output,
        taggers,
        kind="KIND_GPU" if args.gpu else "KIND_CPU",
        backend=args.backend,
        instance_count=args.instances,
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        intra_op_threads=args.threads,
    )


def run_server(config: ServerConfig) -> int:
    """Serve ``config`` until SIGINT/SIGTERM (exit 0) or until the server dies (:class:`~coffea_lorentz.errors.ServerError`, exit 1)."""
    exposure = exposure_warning(config)
    if exposure is not None:  # printed, not a Python warning: no filter can hide an open port
        print(f"coffea-lorentz serve: warning: {exposure}", file=sys.stderr, flush=True)
    TritonServer(config).serve_forever(announce=lambda line: print(line, flush=True))
    print("stopped Triton server", file=sys.stderr)
    return 0
