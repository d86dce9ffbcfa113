"""The main job: score every fat jet of a fileset and write the scores, chunk by chunk, over Dask.

:func:`run_tagging` is the run model. A chunk (one entry range of one input file) is the unit of
work; every chunk either produces a verified output file or is recorded as failed with a one-line
reason, and the run goes on with the others:

1. configuration is checked before anything runs: tagger names, the server (reachable, serving
   every tagger with the expected signature and a ``max_batch_size`` that fits), the output
   (locked for this run, holding no files of a run with other settings unless ``overwrite``);
2. every input file is inspected on the workers (entries, UUID, branches); a file that cannot be
   used is a failure of that file, the others go on;
3. each chunk runs as one Dask task (:class:`~coffea_lorentz.run.task.ChunkJob`): skipped when its
   file at the destination already verifies — so rerunning the same command resumes — otherwise
   read, scored and written straight to the destination by the worker;
4. the client verifies every chunk file (entries from the file header, metadata record) and, only
   when all are done, writes ``manifest.json``. Failures are listed in the summary and in a log
   file in the output folder; rerunning completes only what is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .. import DEFAULT_TAGGER, __version__
from ..batch import BatchConfig, default_max_constituents
from ..errors import ConfigurationError, InputFileError, one_line
from ..infer import BackendSpec
from ..store import OutputStore
from .chunks import Chunk, ChunkRecord, RunSettings, check_chunk_file, plan_chunks
from .summary import RunSummary
from .executors import ClusterSpec, open_executor
from .fileset import InputFile, inspect_file, load_fileset
from .local_server import shared_memory_safe, triton_url
from .lock import LOCK_NAME, OutputLock
from .preflight import (check_taggers, given_server_preflight, load_models, model_kind_of, process_kind,
                        served_preflight, torch_hashes)
from .manifest import MANIFEST_NAME, RUN_RECORD_NAME, build_manifest, dumps
from .log import log_interruption, log_text, unless_unwritable, write_log
from .stale import STALE_FOLDER, set_aside_stale
from .task import ChunkJob

__all__ = ["RunConfig", "RunSummary", "run_tagging", "default_max_constituents", "EXIT_FAILURES"]

#: Exit status of ``coffea-lorentz run`` when the run finished but some chunks failed (rerun to resume).
EXIT_FAILURES = 3
#: Folder of the output that holds the runs' log files.
LOG_FOLDER = "_logs"
_VERIFY_THREADS = 8


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Options of one run.

    Attributes:
        taggers: tagger names; each adds ``FatJet_<tagger>_score``.
        reweighters: reweighters, shipped short names (``"fsr"``) or paths of ``reweight_<name>.pt``;
            each adds ``FatJet_weight_<name>`` (per jet) and ``weight_<name>`` (per event, the leading
            jet's), its classifier served beside the taggers as ``reweight_<name>``.
        backend: ``"triton"``, ``"torch"`` (in-process) or ``"onnx"`` (in-process ONNX Runtime, the
            same weights exported on each worker at its first chunk).
        server_url: Triton gRPC address; None with ``backend="triton"`` starts a local server.
        server_host: address the local server binds to and hands to the workers; None: 127.0.0.1
            for a local cluster, else this machine's address on the route to the scheduler.
        cluster: where the chunks run (:class:`~coffea_lorentz.run.executors.ClusterSpec`): ``local``,
            ``tcp://HOST:PORT``, ``gateway[:URL]``, ``htcondor``, ``slurm`` or ``in-process``; None:
            ``scheduler`` if given, else ``local``.
        scheduler: address of an existing Dask scheduler ``tcp://HOST:PORT`` (same as ``cluster``).
        n_workers: workers to start (LocalCluster processes, gateway workers, batch jobs); 0 with a
            local cluster runs every task in this process.
        adapt: ``(minimum, maximum)`` workers, scaled adaptively (gateway, batch pools).
        worker_cores, worker_memory, walltime: resources of one batch job (None: the dask config).
        worker_wait_s: how long to wait for the first workers of a cluster.
        treename: the tree of ROOT files given directly (a fileset JSON names its own trees).
        max_chunks: process at most this many chunks per dataset (a quick test; no manifest).
        skip_bad_files: input files that cannot be opened or lack the PF-candidate branches are
            listed and skipped; the run is complete (manifest written, exit 0) without them.
        copy_branches: globs of input branches copied into every output file (``("FatJet_*",)``), so
            that the outputs read as NanoAOD with the scores next to the kinematics.
        chunksize: events per chunk (one output file each).
        batch_config: truncation, buckets and batch size; None keeps as many leading constituents as
            the taggers' shipped weights were trained on (:func:`default_max_constituents`). Its
            ``max_batch_size`` None sends the served ``max_batch_size`` per request (256 in-process);
            a size above the served one is refused before any chunk.
        client_options: Triton client options (``timeout_s``, ``server_wait_s``, ``backoff_ms``,
            ``shared_memory``, ``tls``, ``token``, …; the last two, a
            :class:`~coffea_lorentz.infer.security.TlsConfig` and a
            :class:`~coffea_lorentz.infer.security.BearerToken`, also go to the preflight and the
            statistics reading, and are written nowhere). ``shared_memory`` defaults to on for the
            local server started for the run when it binds to loopback and the cluster runs on this host (``local``,
            ``futures``, ``in-process``), off otherwise.
        server_wait_s: how long a server that stops answering is waited for before chunks fail.
        fail_fast: stop at the first failed chunk and raise its error (for debugging).
        overwrite: remove an earlier run's files from the output before starting.
        storage_options: fsspec options of the output store, as ``(name, value)`` pairs.
        progress: show a progress bar.
        collection: the jets scored: ``"FatJet"`` (default), ``"Jet"`` or any collection with
            ``<C>PFCands``; every per-jet branch is ``<collection>_<name>`` (recorded in the run's
            settings, so a resume with another collection is refused).
        models: models brought by the user, each a path or ``NAME=PATH`` or a loaded ``SpecModel``
            (:func:`coffea_lorentz.user_model.load_model`: a weaver export folder, an ``.onnx`` or
            TorchScript file with its spec) or a model already on the server
            (:func:`coffea_lorentz.user_model.served_model`); each adds ``FatJet_<name>_<class>``
            per class. With ``backend="triton"`` they are served like the taggers: built into the
            local server, or expected on ``server_url`` under their names with their spec's inputs.
        model_backend: where those models run: ``"triton"``, or in-process ``"onnx"`` or
            ``"torch"``; None follows ``backend`` (``"torch"`` there: by the file's format).
    """

    taggers: tuple[str, ...] = (DEFAULT_TAGGER,)
    reweighters: tuple[str, ...] = ()
    backend: str = "triton"
    server_url: str | None = None
    server_host: str | None = None
    cluster: str | None = None
    scheduler: str | None = None
    n_workers: int = 2
    adapt: tuple[int, int] | None = None
    worker_cores: int | None = None
    worker_memory: str | None = None
    walltime: str | None = None
    worker_wait_s: float = 600.0
    treename: str = "Events"
    max_chunks: int | None = None
    skip_bad_files: bool = False
    copy_branches: tuple[str, ...] = ()
    chunksize: int = 100_000
    batch_config: BatchConfig | None = None
    client_options: tuple[tuple[str, object], ...] = ()
    server_wait_s: float = 300.0
    fail_fast: bool = False
    overwrite: bool = False
    storage_options: tuple[tuple[str, object], ...] = ()
    progress: bool = True
    models: tuple = ()
    model_backend: str | None = None
    collection: str = "FatJet"

    def __post_init__(self) -> None:
        if self.backend not in ("triton", "torch", "onnx"):
            raise ConfigurationError(f"RunConfig.backend: expected 'triton', 'torch' or 'onnx', got {self.backend!r}")
        if self.model_backend not in (None, "onnx", "torch", "triton"):
            raise ConfigurationError("RunConfig.model_backend: expected 'triton', 'onnx', 'torch' or None, got "
                                     f"{self.model_backend!r}")
        if self.model_backend == "triton" and self.backend != "triton":
            raise ConfigurationError("RunConfig.model_backend 'triton' needs backend 'triton' (a server for the run)")
        if self.chunksize < 1:
            raise ConfigurationError(f"RunConfig.chunksize must be ≥ 1, got {self.chunksize}")
        if not self.taggers and not self.models:
            raise ConfigurationError("RunConfig.taggers: no tagger given")
        if len(set(self.taggers)) != len(self.taggers):
            raise ConfigurationError(f"RunConfig.taggers: a tagger is named twice in {list(self.taggers)}")
        if not self.collection.isidentifier():
            raise ConfigurationError(f"RunConfig.collection: expected a NanoAOD collection name such as 'FatJet' or "
                                     f"'Jet', got {self.collection!r}")
        self.cluster_spec()  # an unknown cluster kind is refused here

    def cluster_spec(self) -> ClusterSpec:
        """The cluster the chunks run on."""
        text = self.cluster or self.scheduler or "local"
        return ClusterSpec.parse(text, n_workers=self.n_workers, adapt=self.adapt, cores=self.worker_cores,
                                 memory=self.worker_memory, walltime=self.walltime, worker_wait_s=self.worker_wait_s)


# -- the output folder -----------------------------------------------------------------------
def _claim_output(store: OutputStore, settings: RunSettings, overwrite: bool) -> None:
    """Make the output folder this run's: refuse one holding another run's files unless ``overwrite``."""
    import json

    existing = [name for name in store.list_files() if name != LOCK_NAME]
    if overwrite:
        for name in existing:
            store.remove(name)
        existing = []
    if store.exists(RUN_RECORD_NAME):
        try:
            earlier = json.loads(store.read_text(RUN_RECORD_NAME))
        except ValueError:
            earlier = {}
        differences = settings.differences(earlier)
        if differences:
            raise ConfigurationError(
                f"output {store.url} holds a run with other settings ({'; '.join(differences)}); "
                "choose another --output, or pass --overwrite to remove that run's files first"
            )
    elif any(name.endswith(".root") for name in existing):
        raise ConfigurationError(
            f"output {store.url} holds ROOT files but no {RUN_RECORD_NAME} (not a coffea-lorentz run folder); "
            "choose another --output, or pass --overwrite to remove them first"
        )
    store.remove(MANIFEST_NAME)
    store.write_text(RUN_RECORD_NAME, dumps(settings.to_json()))


def _verify_all(store: OutputStore, records: list[ChunkRecord], settings: RunSettings) -> None:
    """Check every done or skipped chunk's file on the destination; a file that does not verify fails its chunk."""
    done = [record for record in records if record.ok]
    # Threads: each check waits on the store (a stat and a few reads, round trips on XRootD or S3).
    with ThreadPoolExecutor(max_workers=_VERIFY_THREADS) as pool:
        checks = list(pool.map(lambda record: check_chunk_file(store, record.chunk, settings), done))
    for record, check in zip(done, checks):
        ok, why_not = check.done, check.why_not
        if ok and record.n_bytes and check.n_bytes != record.n_bytes:
            ok, why_not = False, f"{check.n_bytes} bytes, the worker read {record.n_bytes}"
        if not ok:
            record.status = "failed"
            record.reason = f"output file {record.chunk.path} did not verify: {why_not}"


def _collect_histograms(store: OutputStore, summary: RunSummary) -> None:
    """Add up the chunks' score histograms; save them, plot them, and make the per-dataset table."""
    from . import histograms

    merged = histograms.merge([record.histograms for record in summary.records if record.ok])
    if not merged["histograms"]:
        return
    histograms.save(store, merged)
    summary.histograms = merged["histograms"]
    summary.plots = histograms.plot(store, merged)
    events: dict[str, int] = {}
    for record in summary.records:
        if record.ok:
            events[record.chunk.dataset] = events.get(record.chunk.dataset, 0) + record.rows
    summary.datasets = histograms.dataset_table(merged, events)


def run_tagging(inputs: Sequence[str | Path] | dict, output: str | Path, config: RunConfig = RunConfig()) -> RunSummary:
    """Score every fat jet in ``inputs`` (files, fileset JSONs or a fileset dict); write chunk files to ``output``.

    ``output`` is a local folder or an fsspec URL (``root://host//path``, ``s3://…``). Returns a
    :class:`RunSummary`; ``summary.complete`` says whether every chunk is done and ``manifest.json``
    was written. Raises :class:`~coffea_lorentz.errors.ConfigurationError` (or another
    :class:`~coffea_lorentz.errors.CoffeaLorentzError`) before any chunk runs when the run cannot
    start as configured. With ``config.fail_fast`` the first chunk error is raised.
    """
    from ..processors.tagger import TaggerProcessor
    from ..reweight.lookup import find_reweighters
    from ..reweighter import ReweighterSpec

    started = time.perf_counter()
    stage_s: dict[str, float] = {}
    stage = _Stages(stage_s)
    stage.start("start")
    fileset = load_fileset(inputs, treename=config.treename)
    check_taggers(config.taggers)
    reweighters = find_reweighters(config.reweighters)
    model_kind = model_kind_of(config.backend, config.model_backend)
    brought = load_models(config.models, config.taggers, model_kind)  # a spec or model that does not fit is refused here, before any output
    if not config.taggers and not reweighters and model_kind != "triton":
        config = dataclasses.replace(config, backend="torch")  # nothing to serve: no server is started
    models = [*config.taggers, *(info.model for info in reweighters)]  # what the server must serve
    batch_config = config.batch_config or BatchConfig(max_constituents=default_max_constituents(config.taggers))
    store = OutputStore(output, **dict(config.storage_options))
    sources = sorted({source for spec in fileset.values() for source in spec["files"]})
    summary = RunSummary(output=store.url, files=sources, stage_s=stage_s)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    security = {key: value for key, value in config.client_options if key in ("tls", "token")}
    if config.backend == "triton" and config.server_url:  # a given server is checked before the output is touched
        hashes, brought = given_server_preflight(config.server_url, models, brought, model_kind, batch_config,
                                                 server_wait_s=config.server_wait_s, **security)
    with OutputLock(store) as lock, open_executor(config.cluster_spec(), report=_reporter(config.progress)) as executor, \
            triton_url(backend=config.backend, server_url=config.server_url, taggers=config.taggers,
                       weights={info.model: info.weights for info in reweighters},
                       brought=[model for model, _ in brought] if model_kind == "triton" else (),
                       chosen_host=config.server_host, scheduler_address=executor.scheduler_address,
                       report=_notice) as server:
        url = server.url
        # the run's own server, when reachable from the network, keeps its statistics behind a key of the run
        driver_security = security if server.admin_token is None else {**security, "token": server.admin_token}
        store.remove_temporary_files()
        if config.backend in ("torch", "onnx"):  # the same model, so the same identity, in-process
            hashes = torch_hashes(config.taggers) | {info.model: info.sha256 for info in reweighters}
        elif not config.server_url:
            hashes, brought = served_preflight(url, models, brought, model_kind, batch_config,
                                              server_wait_s=config.server_wait_s, **driver_security)
        hashes = hashes | {model.name: model.identity for model, _ in brought}
        executor.check_workers(url, **security)
        settings = RunSettings(taggers=tuple(config.taggers), model_sha256=tuple(sorted(hashes.items())),
                               max_constituents=batch_config.max_constituents,
                               buckets=tuple(int(n) for n in batch_config.lengths), chunksize=config.chunksize,
                               copy_branches=tuple(config.copy_branches),
                               # per-jet weights every chunk holds; an event-level one is in model_sha256
                               reweighters=tuple(info.name for info in reweighters if info.level == "jet"),
                               models=tuple((model.name, classes) for model, classes in brought),
                               collection=config.collection,
                               backend=config.backend,
                               version=__version__)
        _claim_output(store, settings, config.overwrite)
        options = dict(config.client_options)
        if config.backend == "triton":
            options.setdefault("server_wait_s", config.server_wait_s)
            options.setdefault("shared_memory", shared_memory_safe(url, server_given=bool(config.server_url),
                                                                   cluster_kind=config.cluster_spec().kind))
        specs = [BackendSpec.make(name, kind=config.backend, url=url, **options) for name in config.taggers]
        weighting = [ReweighterSpec.from_info(info, kind=config.backend, url=url, **options) for info in reweighters]
        processor = TaggerProcessor(backends=specs, output=store, batch_config=batch_config, settings=settings,
                                    reweighters=weighting, models=[(model, process_kind(model_kind, url, options))
                                                                   for model, _ in brought])
        job = ChunkJob(processor=processor, store=store, settings=settings, fail_fast=config.fail_fast,
                       served=_served_specs(specs, weighting))
        targets = [(dataset, source, tree) for dataset, spec in fileset.items() for source, tree in spec["files"].items()]
        stage.start("inspect")
        files = [info for _, info in executor.map(functools.partial(_inspect, collection=config.collection), targets,
                                                   key_prefix="inspect",
                                                   on_error=lambda t, err: InputFile(
                                                       dataset=t[0], source=t[1], treename=t[2], error=one_line(err)))]
        order = {(dataset, source): i for i, (dataset, source, _) in enumerate(targets)}
        files.sort(key=lambda info: order[(info.dataset, info.source)])  # fileset order, however they finished
        summary.bad_files = [info for info in files if info.error is not None]
        if summary.bad_files and config.fail_fast:
            bad = summary.bad_files[0]
            raise InputFileError(bad.source, bad.error or "unusable")
        stage.start("plan")
        chunks = plan_chunks([info for info in files if info.error is None], config.chunksize)
        summary.stale_files = set_aside_stale(store, chunks, files)  # the full plan, before --maxchunks
        planned = {chunk.path for chunk in chunks}
        summary.skipped_bad_files = config.skip_bad_files
        if config.max_chunks is not None:
            kept = _first_chunks(chunks, config.max_chunks)
            summary.limited = len(kept) < len(chunks)
            chunks = kept
        on_error = None if config.fail_fast else (
            lambda chunk, err: ChunkRecord(chunk=chunk, status="failed", reason=one_line(err)))
        served = [*models, *(model.name for model, _ in brought)] if model_kind == "triton" else models
        log_name = f"{LOG_FOLDER}/run-{stamp}-{lock.record['run_id'][:8]}.log"
        stage.start("chunks")
        try:
            with _server_window(url, served, driver_security) as window, _progress(config.progress, len(chunks)) as advance:
                for _, record in executor.map(job, chunks, key_prefix="chunk", on_error=on_error):
                    summary.records.append(record)
                    advance(record)
        except KeyboardInterrupt as interrupted:  # Ctrl-C or SIGTERM: the log is written, the rerun resumes
            log_interruption(store, log_name, summary, settings, interrupted, planned=len(chunks), started=started)
            raise
        summary.server = window.lines() if window is not None else []
        stage.start("verify")
        _verify_all(store, summary.records, settings)
        stage.start("histograms")
        unless_unwritable(summary, "histograms and plots", lambda: _collect_histograms(store, summary))
        stage.start("manifest")
        summary.stray_files = [name for name in store.list_files() if name.endswith(".root") and name not in planned
                               and not name.startswith(f"{STALE_FOLDER}/")]
        summary.wall_s = time.perf_counter() - started
        if summary.complete:
            manifest = build_manifest(output=store.url, settings=settings, records=summary.records, wall_s=summary.wall_s,
                                      skipped_files={info.source: info.error or "" for info in summary.bad_files})
            if unless_unwritable(summary, MANIFEST_NAME, lambda: store.write_text(MANIFEST_NAME, dumps(manifest))):
                summary.manifest = store.url_of(MANIFEST_NAME)
        stage.start("log")
        write_log(store, log_name, log_text(summary, settings), summary)
        stage.stop()
    return summary


class _Stages:
    """Adds the seconds of each stage of a run to ``seconds`` (stage → s): :meth:`start` ends the one before."""

    def __init__(self, seconds: dict[str, float]):
        self.seconds = seconds
        self.current: str | None = None
        self.since = 0.0

    def start(self, name: str | None) -> None:
        now = time.perf_counter()
        if self.current is not None:
            self.seconds[self.current] = self.seconds.get(self.current, 0.0) + now - self.since
        self.current, self.since = name, now

    def stop(self) -> None:
        self.start(None)


def _served_specs(specs: list, weighting: list) -> tuple:
    """The backend specs of the taggers and reweighters that a Triton server serves (their retries are counted)."""
    return tuple(spec for spec in [*specs, *(weights.backend for weights in weighting)] if spec.kind == "triton")


@contextlib.contextmanager
def _server_window(url: str | None, taggers: Sequence[str], security: dict):
    """Triton's own statistics around the chunks (None in-process); ``security``: the client's ``tls`` and ``token``."""
    if url is None:
        yield None
        return
    from ..infer.server_statistics import ServerStatisticsWindow

    with ServerStatisticsWindow(url, list(taggers), **security) as window:
        yield window


def _first_chunks(chunks: list[Chunk], per_dataset: int) -> list[Chunk]:
    """The first ``per_dataset`` chunks of each dataset, in file and entry order."""
    counts: dict[str, int] = {}
    kept = []
    for chunk in chunks:
        if counts.get(chunk.dataset, 0) < per_dataset:
            counts[chunk.dataset] = counts.get(chunk.dataset, 0) + 1
            kept.append(chunk)
    return kept


def _notice(line: str) -> None:
    """A line the run always prints (a port it opened to the network)."""
    import sys

    print(f"coffea-lorentz run: {line}", file=sys.stderr, flush=True)


def _reporter(enabled: bool):
    """Where cluster progress (workers joining) goes: stderr, or nowhere."""
    if not enabled:
        return lambda line: None
    import sys

    return lambda line: print(f"coffea-lorentz run: {line}", file=sys.stderr, flush=True)


def _inspect(target: tuple[str, str, str], collection: str = "FatJet") -> InputFile:
    return inspect_file(*target, collection=collection)


@contextlib.contextmanager
def _progress(enabled: bool, total: int):
    """A progress bar counting done, skipped and failed chunks; yields ``advance(record)``."""
    if not enabled or total == 0:
        yield lambda record: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    counts = {"done": 0, "skipped": 0, "failed": 0}
    with Progress(TextColumn("chunks"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("", total=total)

        def advance(record: ChunkRecord) -> None:
            counts[record.status] = counts.get(record.status, 0) + 1
            bar.update(task, advance=1, description=", ".join(f"{v} {k}" for k, v in counts.items() if v))

        yield advance

