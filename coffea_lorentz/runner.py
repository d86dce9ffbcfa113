"""The main job: score every fat jet of a fileset and write the scores, over Dask.

:func:`run_tagging` checks the inputs, starts what is needed (a local Triton server, a Dask
``LocalCluster``) and stops it afterwards, drives :class:`processors.tagger.TaggerProcessor` with
coffea's ``processor.Runner``, checks that every input event has exactly one output row, and
moves the output files into place only when everything succeeded.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import DEFAULT_TAGGER
from .batch import BatchConfig
from .errors import CoffeaLorentzError, InputFileError, InvalidInputError, MissingBranchError
from .infer import BackendSpec
from .read import REQUIRED_BRANCHES

__all__ = ["RunConfig", "RunSummary", "load_fileset", "check_inputs", "run_tagging", "default_max_constituents"]


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Options of one run.

    Attributes:
        taggers: tagger names; each adds ``FatJet_<tagger>_score``.
        backend: ``"triton"`` or ``"torch"`` (in-process).
        server_url: Triton gRPC address; None with ``backend="triton"`` starts a local server.
        scheduler: address of an existing Dask scheduler ``tcp://HOST:PORT``; None starts a LocalCluster.
        n_workers: LocalCluster worker processes; 0 runs the iterative executor in this process.
        chunksize: events per chunk (one output file each).
        batch_config: truncation, buckets and batch size; None keeps as many leading constituents as
            the taggers' shipped weights were trained on (:func:`default_max_constituents`).
        client_options: Triton client options (``timeout_s``, ``retries``, ``backoff_ms``, …).
        progress: show a progress bar.
    """

    taggers: tuple[str, ...] = (DEFAULT_TAGGER,)
    backend: str = "triton"
    server_url: str | None = None
    scheduler: str | None = None
    n_workers: int = 2
    chunksize: int = 100_000
    batch_config: BatchConfig | None = None
    client_options: tuple[tuple[str, object], ...] = ()
    progress: bool = True


@dataclass(frozen=True)
class RunSummary:
    """What a run did."""

    files: list[str]
    events: int
    jets: int
    constituents: int
    wall_s: float
    outputs: list[Path]

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def jets_per_s(self) -> float:
        return self.jets / self.wall_s if self.wall_s > 0 else float("nan")


def default_max_constituents(taggers: Sequence[str], fallback: int = 128) -> int:
    """Constituents to keep per jet: the fewest any tagger's shipped weights were trained on, else ``fallback``.

    A tagger is evaluated on what it was trained on; sum-aggregating taggers change their output
    when given soft constituents they never saw.
    """
    from .models import trained_max_constituents

    trained = [n for n in (trained_max_constituents(name) for name in taggers) if n is not None]
    return min(trained) if trained else fallback


def load_fileset(inputs: Sequence[str | Path]) -> dict[str, dict]:
    """ROOT files and/or coffea fileset JSON files → a coffea fileset ``{dataset: {"files": {path: tree}}}``.

    A ROOT file given directly goes to a dataset named after the file's stem.
    """
    fileset: dict[str, dict] = {}
    for item in inputs:
        path = Path(item)
        if path.suffix == ".json":
            if not path.is_file():
                raise InputFileError(str(path), "fileset JSON not found")
            try:
                loaded = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise InputFileError(str(path), f"not valid JSON: {err}") from None
            for dataset, spec in loaded.items():
                files = spec.get("files", spec) if isinstance(spec, dict) else spec
                if isinstance(files, list):
                    files = {f: "Events" for f in files}
                resolved = {str((path.parent / f) if not Path(f).is_absolute() and "://" not in f else f): tree
                            for f, tree in files.items()}
                fileset.setdefault(dataset, {"files": {}})["files"].update(resolved)
        else:
            fileset.setdefault(path.stem, {"files": {}})["files"][str(path)] = "Events"
    if not fileset:
        raise InvalidInputError("no input files given")
    return fileset


def check_inputs(fileset: dict[str, dict]) -> dict[str, int]:
    """Open every file, check its tree and branches; returns file → number of events.

    Raises :class:`InputFileError` for a missing or unreadable file or tree and
    :class:`MissingBranchError` for a file without the PF-candidate branches.
    """
    import uproot

    entries = {}
    for spec in fileset.values():
        for filename, treename in spec["files"].items():
            if "://" not in filename and not Path(filename).is_file():
                raise InputFileError(filename, "no such file")
            try:
                file = uproot.open(filename)
            except Exception as err:  # noqa: BLE001 - uproot raises many types for a broken file
                raise InputFileError(filename, f"cannot be read as ROOT: {err}") from None
            with file:
                if treename not in file:
                    raise InputFileError(filename, f"has no tree {treename!r}; keys: {file.keys(cycle=False)}")
                tree = file[treename]
                present = set(tree.keys())
                missing = [b for b in REQUIRED_BRANCHES if b not in present]
                if "FatJet_nConstituents" not in present and "FatJetPFCands_jetIdx" not in present:
                    missing.append("FatJet_nConstituents or FatJetPFCands_jetIdx")
                if missing:
                    raise MissingBranchError(filename, missing, "fat-jet constituents need a PFNano file with PF candidates")
                entries[filename] = int(tree.num_entries)
    return entries


@contextlib.contextmanager
def _triton_url(config: RunConfig) -> Iterator[str | None]:
    """The server to use: the given URL, or a local server started (and stopped) for the run."""
    if config.backend != "triton":
        yield None
        return
    if config.server_url:
        yield config.server_url
        return
    from .models import pretrained
    from .repository import build_repository
    from .serve import ServerConfig, TritonServer

    with tempfile.TemporaryDirectory(prefix="coffea-lorentz-repo-") as tmp:
        repository = build_repository(Path(tmp) / "models", {name: pretrained(name) for name in config.taggers})
        with TritonServer(ServerConfig(repository=repository)) as server:
            yield server.grpc_url


@contextlib.contextmanager
def _executor(config: RunConfig):
    """A coffea executor: Dask on a given scheduler or a LocalCluster, or the iterative executor."""
    from coffea import processor

    if config.scheduler is None and config.n_workers <= 0:
        yield processor.IterativeExecutor(status=config.progress)
        return
    from distributed import Client, LocalCluster

    if config.scheduler is not None:
        with Client(config.scheduler) as client:
            yield processor.DaskExecutor(client=client, status=config.progress)
        return
    with LocalCluster(n_workers=config.n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield processor.DaskExecutor(client=client, status=config.progress)


def _own_error(err: BaseException) -> CoffeaLorentzError | None:
    """The first coffea-lorentz error in ``err``'s chain of causes (coffea wraps worker errors)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, CoffeaLorentzError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def run_tagging(inputs: Sequence[str | Path] | dict, output_dir: str | Path, config: RunConfig = RunConfig()) -> RunSummary:
    """Score every fat jet in ``inputs`` (files, fileset JSONs or a fileset dict); write to ``output_dir``.

    On any failure nothing is left in ``output_dir`` from this run.
    """
    from coffea import processor
    from coffea.nanoevents import PFNanoAODSchema

    from processors.tagger import TaggerProcessor

    from .write import OutputStage

    fileset = inputs if isinstance(inputs, dict) else load_fileset(inputs)
    entries = check_inputs(fileset)
    start = time.perf_counter()
    with _triton_url(config) as url, OutputStage(output_dir) as stage:
        specs = [BackendSpec(tagger=name, kind=config.backend, url=url, options=config.client_options)
                 for name in config.taggers]
        batch_config = config.batch_config or BatchConfig(max_constituents=default_max_constituents(config.taggers))
        proc = TaggerProcessor(backends=specs, output_dir=stage.path, batch_config=batch_config)
        with _executor(config) as executor:
            runner = processor.Runner(executor=executor, schema=PFNanoAODSchema, chunksize=config.chunksize)
            try:
                result = runner(fileset, proc, treename="Events")
            except Exception as err:  # noqa: BLE001 - coffea wraps worker errors in a bare Exception
                cause = _own_error(err)
                if cause is None:
                    raise
                raise cause from err
        expected = sum(entries.values())
        if result.get("events", 0) != expected:
            raise InvalidInputError(f"wrote {result.get('events', 0)} event rows for {expected} input events")
    wall_s = time.perf_counter() - start
    return RunSummary(
        files=sorted(entries),
        events=int(result.get("events", 0)),
        jets=int(result.get("jets", 0)),
        constituents=int(result.get("constituents", 0)),
        wall_s=wall_s,
        outputs=list(stage.committed),
    )
