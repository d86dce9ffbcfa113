"""``coffea-lorentz run``: score every fat jet of a fileset and write the scores as new branches."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import DEFAULT_TAGGER
from ..batch import BatchConfig
from ..errors import ConfigurationError, InputFileError, InvalidInputError
from ..run import EXIT_FAILURES, RunConfig, RunSummary, default_max_constituents, load_fileset, run_tagging

__all__ = ["register", "print_summary"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="score fat jets of ROOT files or a fileset and write FatJet_<tagger>_score branches",
        description=(
            "Read PFNano files with coffea, score every FatJet with the chosen taggers and write one ROOT file per "
            "chunk with run, luminosityBlock, event, nFatJet and FatJet_<tagger>_score, straight from the workers to "
            "the output (a folder or an fsspec URL). Rerunning the same command resumes: finished chunks are "
            "skipped. A chunk that fails is listed and the others finish (exit status 3: rerun to resume); "
            "manifest.json appears in the output once every chunk is done. Without --server a local Triton server "
            "is started for the run and stopped afterwards; --backend torch runs in-process."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", type=_input,
                        help="ROOT file (path or URL), a folder (its *.root files, one dataset named after it) or a "
                             "coffea fileset JSON")
    parser.add_argument("--output", "-o", required=True, metavar="PATH_OR_URL",
                        help="output folder: a local path or an fsspec URL (root://HOST//path, s3://bucket/path)")
    parser.add_argument("--tagger", action="append", dest="taggers", metavar="NAME|PATH",
                        help=f"tagger to run (repeatable; default: {DEFAULT_TAGGER}): a shipped name, or a model you "
                             "bring — a weaver export folder (model.onnx + preprocess.json), an .onnx or TorchScript .pt "
                             "with a spec JSON beside it, a coffea-lorentz train output folder, or NAME=PATH — which writes "
                             "FatJet_<name>_<class> per class (a train folder: FatJet_<name>_score)")
    parser.add_argument("--spec", action="append", default=[], metavar="[NAME=]SPEC.json",
                        help="with --server: a --tagger NAME that the server already serves (not a shipped tagger) is "
                             "that model, described by this spec (a spec JSON or a weaver preprocess.json); its "
                             "served inputs are checked against the spec before any chunk (repeatable as NAME=SPEC)")
    parser.add_argument("--classes", metavar="A,B,...",
                        help="class names of the models given by path (default: the spec's, else score_0, score_1, ...)")
    parser.add_argument("--collection", default="FatJet", metavar="NAME",
                        help="the jets scored: FatJet (default), Jet (AK4) or any collection with <NAME>PFCands; "
                             "branches are written as <NAME>_<tagger>_score with the counter n<NAME>")
    parser.add_argument("--reweighter", action="append", dest="reweighters", default=[], metavar="NAME|PATH",
                        help="also write reweighting factors FatJet_weight_<name> (per jet) and weight_<name> (per event, "
                             "the leading jet's): a shipped reweighter (fsr: shower alpha_s 0.1365 -> 0.120) or the "
                             "path of a reweight_<name>.pt from reweight-train (repeatable)")
    parser.add_argument("--backend", choices=("triton", "torch", "onnx"), default="triton",
                        help="inference backend for every tagger and model (default: triton: the local server, or "
                             "--server; onnx: ONNX Runtime in-process; torch: in-process, the models you bring by their "
                             "format)")
    parser.add_argument("--server", metavar="grpc://HOST:PORT",
                        help="use this running Triton server instead of a local one; grpcs://HOST:PORT always means TLS")
    parser.add_argument("--server-host", metavar="ADDRESS",
                        help="address the local server binds to and gives the workers (default: 127.0.0.1, or this "
                             "machine's address towards the scheduler with --scheduler)")
    parser.add_argument("--cluster", metavar="SPEC", default=None,
                        help="where chunks run: local (default: a LocalCluster of --workers processes), "
                             "tcp://HOST:PORT (an existing scheduler), gateway[:URL] (a new dask-gateway cluster), "
                             "htcondor or slurm (batch jobs through dask-jobqueue), in-process")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="existing Dask scheduler (same as --cluster tcp://…)")
    parser.add_argument("--workers", type=_at_least(0), default=2, metavar="N",
                        help="workers to start: LocalCluster processes, gateway workers or batch jobs (default: 2; "
                             "0 with a local cluster runs every chunk in this process)")
    parser.add_argument("--adapt", metavar="MIN:MAX", help="adaptive workers between MIN and MAX (gateway, htcondor, slurm)")
    parser.add_argument("--worker-cores", type=int, metavar="N", help="cores of one batch job (default: dask config)")
    parser.add_argument("--worker-memory", metavar="SIZE", help="memory of one batch job, e.g. 4GB (default: dask config)")
    parser.add_argument("--walltime", metavar="HH:MM:SS", help="wall time of one batch job (default: dask config)")
    parser.add_argument("--print-job-script", action="store_true",
                        help="print the batch job script of --cluster htcondor/slurm and exit")
    parser.add_argument("--executor", choices=("dask", "futures", "iterative"), default="dask",
                        help="dask (default: the --cluster), futures (a pool of --workers local processes) or "
                             "iterative (every chunk in this process)")
    parser.add_argument("--chunksize", type=_at_least(1), default=100_000, help="events per chunk and output file (default: 100000)")
    parser.add_argument("--maxchunks", type=_at_least(1), metavar="N", help="process at most N chunks per dataset (a quick test)")
    parser.add_argument("--skipbadfiles", action="store_true",
                        help="skip input files that cannot be opened or lack the PF-candidate branches (listed; the run "
                             "completes without them)")
    parser.add_argument("--copy-branches", action="append", default=[], metavar="GLOB",
                        help="copy input branches matching GLOB (repeatable, e.g. 'FatJet_*') into the outputs, so "
                             "they read as NanoAOD with the scores next to the kinematics")
    parser.add_argument("--treename", default="Events", help="tree of ROOT files given directly (default: Events)")
    parser.add_argument("--max-constituents", type=int, default=None,
                        help="leading-pT constituents kept per jet (default: what the taggers were trained on, else 128)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="most jets per inference request (default: the served model's max_batch_size with "
                             "--backend triton, 256 with --backend torch); a larger one than the server takes is refused")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per-request timeout in seconds (default: 300)")
    parser.add_argument("--shared-memory", choices=("auto", "on", "off"), default="auto",
                        help="send the inputs through Triton system shared memory: auto (default) for the local server "
                             "a run starts, on loopback with workers on this host; on also for a --server on this host "
                             "(e.g. coffea-lorentz serve; not a proxy in front of other hosts); off never")
    secure = parser.add_argument_group("a secured --server (TLS: grpcs://; see 'Serving securely' in the README)")
    secure.add_argument("--tls-ca", metavar="FILE", help="CA certificate(s), PEM, the server's certificate must be "
                                                         "signed by (default with grpcs://: the system's roots)")
    secure.add_argument("--tls-cert", metavar="FILE", help="client certificate, PEM, for mutual TLS (with --tls-key)")
    secure.add_argument("--tls-key", metavar="FILE", help="the client certificate's private key, PEM (with --tls-cert)")
    secure.add_argument("--token-file", metavar="FILE",
                        help="file holding a bearer token sent with every call (default: $COFFEA_LORENTZ_TOKEN when set); "
                             "never give a token on the command line")
    parser.add_argument("--server-wait-s", type=float, default=300.0,
                        help="how long to wait for a server that stops answering before its chunks fail (default: 300)")
    parser.add_argument("--overwrite", action="store_true", help="remove an earlier run's files from the output first")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failed chunk and show its error")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=main)


def print_summary(summary: RunSummary) -> None:
    """A short table of what the run did, then one line per failed chunk or unusable file."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console = Console(width=max(console.width, 120))  # paths and tables whole, also when piped
    table = Table(title="coffea-lorentz run", show_header=False)
    table.add_row("input files", str(len(summary.files)))
    table.add_row("chunks", f"{summary.processed} processed, {summary.skipped} skipped (done earlier), "
                            f"{len(summary.failed)} failed")
    if summary.bad_files:
        table.add_row("skipped input files (--skipbadfiles)" if summary.skipped_bad_files else "unusable input files",
                      str(len(summary.bad_files)))
    table.add_row("events written", f"{summary.events:,}")
    table.add_row("fat jets scored", f"{summary.jets:,}")
    table.add_row("wall time", f"{summary.wall_s:.1f} s")
    if summary.processed:
        table.add_row("events/s", f"{summary.events_per_s:,.1f}")
    for source, count in summary.nonfinite_jets.items():
        table.add_row("non-finite inputs", f"{source}: {_plural(count, 'jet')} had constituents with non-finite values "
                                           "(dropped)")
    table.add_row("output", summary.output)
    if summary.limited:
        table.add_row("limited", "--maxchunks: part of the fileset only, no manifest")
    table.add_row("manifest", summary.manifest or "not written (run incomplete)")
    table.add_row("log", summary.log or "")
    if summary.retries_line != "none":
        table.add_row("server retries", summary.retries_line)
    for line in summary.server:
        table.add_row("Triton server", line)
    if summary.plots:
        table.add_row("plots", "\n".join(summary.plots))
    console.print(table)
    for line in summary.outside_domain:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for line in summary.weights:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if summary.figures_note:
        console.print(summary.figures_note, markup=False, highlight=False, soft_wrap=True)
    if summary.datasets:
        title = "scores per dataset (no const.: jets without constituents, score NaN)"
        if any("weight_" in row["label"] for row in summary.datasets):
            title += "; 'tagger, weight_X': each jet counted with its weight; 'weight_X': the weights"
        per_dataset = Table(title=title, show_edge=False)
        for column in ("dataset", "tagger", "events", "jets", "no const.", "mean", "10%", "median", "90%"):
            per_dataset.add_column(column, justify="left" if column in ("dataset", "tagger") else "right",
                                   no_wrap=column != "dataset", overflow="fold")
        for row in summary.datasets:
            per_dataset.add_row(row["dataset"], row["label"], f"{row['events']:,}", f"{row['jets']:,}",
                                f"{row['no_constituents']:,}", _number(row["mean"], ".3f"), _number(row["q10"], ".2f"),
                                _number(row["median"], ".2f"), _number(row["q90"], ".2f"))
        console.print(per_dataset)
    # Plain lines, never cut: a path or reason must be copyable whole. Files skipped on request are
    # skipped, not failed.
    skipped_files = summary.bad_files if summary.skipped_bad_files else []
    failed_files = [] if summary.skipped_bad_files else summary.bad_files
    if skipped_files:
        console.print(f"skipped {_plural(len(skipped_files), 'unusable input file')} (--skipbadfiles):", highlight=False)
        for info in skipped_files:
            console.print(f"  {info.source} (all entries): {info.error}", highlight=False, soft_wrap=True)
    if summary.not_written:
        console.print("not written to the output:", highlight=False)
        for line in summary.not_written:
            console.print(f"  {line}", highlight=False, soft_wrap=True)
    if failed_files or summary.failed or summary.not_written:
        console.print(f"failed ({_plural(len(failed_files), 'file')}, {_plural(len(summary.failed), 'chunk')}); "
                      "fix the cause and rerun the same command to resume:", highlight=False)
        for info in failed_files:
            console.print(f"  {info.source} (all entries): {info.error}", highlight=False, soft_wrap=True)
        for record in summary.failed:
            console.print(f"  {record.chunk.where}: {record.reason}", highlight=False, soft_wrap=True)
    if summary.stale_files:
        console.print(f"moved aside {_plural(len(summary.stale_files), 'chunk file')} of inputs or entry ranges no "
                      f"longer in the fileset to {summary.output}/_stale/ (the dataset folders hold this run's chunks "
                      "only)", highlight=False, soft_wrap=True)
    if summary.stray_files:
        console.print(f"note: {_plural(len(summary.stray_files), 'ROOT file')} in the output belong to no chunk of "
                      "this fileset (manifest.json lists this run's files)", highlight=False)


def _number(value: float, spec: str) -> str:
    """``value`` formatted, or ``-`` where there is none (NaN: no jets with scores)."""
    import math

    return format(value, spec) if math.isfinite(value) else "-"


def _plural(count: int, noun: str) -> str:
    """``1 request``, ``2 requests``, ``0 chunk files``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _adapt(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    low, sep, high = text.partition(":")
    if not sep or not low.isdigit() or not high.isdigit():
        raise ValueError(f"--adapt {text!r}: expected MIN:MAX, e.g. 2:50")
    return int(low), int(high)


def _at_least(low: int):
    """An argparse type: an integer >= ``low`` (argparse names the option and exits 2 otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _input(text: str) -> str:
    """An argparse type: a URL, or a local file or folder that exists (refused before anything starts)."""
    import os

    if "://" not in text and not os.path.exists(os.path.expanduser(text)):
        raise argparse.ArgumentTypeError(f"no such file or folder: {text}")
    return text


def _with_classes(model, classes: list[str]):
    import dataclasses

    return dataclasses.replace(model, spec=model.spec.with_classes(classes))


def _client_options(args: argparse.Namespace) -> tuple[tuple[str, object], ...]:
    """The Triton client's options from the command line (none in-process)."""
    if args.backend != "triton":
        return ()
    options: tuple[tuple[str, object], ...] = (("timeout_s", args.timeout_s),)
    if args.shared_memory != "auto":
        options += (("shared_memory", args.shared_memory == "on"),)
    return options + _security_options(args)


def _security_options(args: argparse.Namespace) -> tuple[tuple[str, object], ...]:
    """``("tls", TlsConfig)`` and ``("token", BearerToken)`` from ``--tls-*``, ``--token-file`` or
    ``$COFFEA_LORENTZ_TOKEN``; TLS options need a ``--server`` (the local server a run starts is plaintext)."""
    from ..infer.security import BearerToken, TlsConfig

    options: tuple[tuple[str, object], ...] = ()
    if args.tls_ca or args.tls_cert or args.tls_key:
        if not args.server:
            raise ConfigurationError("--tls-ca/--tls-cert/--tls-key are for a --server grpcs://HOST:PORT; the local "
                                     "server a run starts listens on loopback in plaintext")
        tls = TlsConfig(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)
        tls.check_files()
        options += (("tls", tls),)
    token = BearerToken.from_file(args.token_file) if args.token_file else BearerToken.from_environment()
    if token is not None:
        options += (("token", token),)
    return options


def _served_models(names: list[str], specs: list[str], *, server: str | None) -> list:
    """The ``--tagger NAME`` models a ``--spec`` describes (models already on ``--server``)."""
    if not specs:
        return []
    from ..models import available
    from ..user_model import served_model

    if not server:
        raise ConfigurationError("--spec describes a model already on a Triton server: give --server URL too "
                                 "(a model file of your own is --tagger PATH, its spec beside it)")
    unknown = [name for name in names if name not in set(available())]
    served = []
    for text in specs:
        if "=" in text and not Path(text).exists():
            name, path = text.split("=", 1)
        elif len(unknown) == 1:
            name, path = unknown[0], text
        else:
            raise ConfigurationError(f"--spec {text}: say which served model it describes with NAME=SPEC "
                                     f"(non-shipped --tagger names: {', '.join(unknown) or 'none'})")
        if name not in names:
            raise ConfigurationError(f"--spec {text}: no --tagger {name}; add --tagger {name}")
        served.append(served_model(name, path))
    return served


def main(args: argparse.Namespace) -> int:
    import os

    from ..user_model import looks_like_path

    # gRPC's own log lines (a failed TLS handshake at INFO, an alert from a proxy that wants a client
    # certificate at ERROR, one per try) would split the one-line error below; every failure that
    # matters reaches the run as a status it reports. GRPC_VERBOSITY=ERROR (or DEBUG) shows them.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")

    given = list(args.taggers or ())
    models = tuple(name for name in given if looks_like_path(name))
    names = [name for name in given if not looks_like_path(name)]
    served = _served_models(names, args.spec, server=args.server)
    names = [name for name in names if name not in {model.name for model in served}]
    taggers = tuple(names) or (() if models or served else (DEFAULT_TAGGER,))
    if args.classes:
        from ..user_model import load_model

        classes = [name.strip() for name in args.classes.split(",") if name.strip()]
        models = tuple(_with_classes(load_model(text), classes) for text in models)
        served = [_with_classes(model, classes) for model in served]
    models = (*models, *served)
    max_constituents = args.max_constituents or default_max_constituents(taggers)
    if args.cluster and args.scheduler:
        raise ValueError("give --cluster or --scheduler, not both")
    if args.executor != "dask" and (args.cluster or args.scheduler):
        raise ValueError(f"--executor {args.executor} runs on this machine; --cluster/--scheduler need --executor dask")
    cluster = {"futures": "futures", "iterative": "in-process"}.get(args.executor, args.cluster)
    config = RunConfig(
        taggers=taggers,
        reweighters=tuple(args.reweighters),
        collection=args.collection,
        backend=args.backend,
        server_url=args.server,
        server_host=args.server_host,
        cluster=cluster,
        scheduler=args.scheduler,
        n_workers=args.workers,
        adapt=_adapt(args.adapt),
        worker_cores=args.worker_cores,
        worker_memory=args.worker_memory,
        walltime=args.walltime,
        chunksize=args.chunksize,
        max_chunks=args.maxchunks,
        skip_bad_files=args.skipbadfiles,
        treename=args.treename,
        copy_branches=tuple(args.copy_branches),
        batch_config=BatchConfig(max_constituents=max_constituents, max_batch_size=args.batch_size),
        client_options=_client_options(args),
        server_wait_s=args.server_wait_s,
        overwrite=args.overwrite,
        fail_fast=args.fail_fast,
        progress=not args.no_progress,
        models=models,
        model_backend="onnx" if args.backend == "onnx" else None,
    )
    if args.print_job_script:
        from ..run.executors import job_script

        print(job_script(config.cluster_spec()))
        return 0
    try:  # an input list that makes no fileset is a usage error: refused before anything is created
        fileset = load_fileset(args.inputs, treename=args.treename)
    except (InputFileError, InvalidInputError) as err:
        print(f"coffea-lorentz run: error: {err}", file=sys.stderr)
        return 2
    summary = run_tagging(fileset, args.output, config)
    print_summary(summary)
    return EXIT_FAILURES if summary.has_failures else 0
