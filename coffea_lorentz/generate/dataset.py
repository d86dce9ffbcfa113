"""Output B: jet datasets in the style of the top-tagging landscape (Kasieczka et al., arXiv:1902.09914).

Selection (:class:`DatasetConfig`): the (up to) two leading anti-kT R = 0.8 jets of each event with
550 < pT < 650 GeV and |η| < 2; jets from tt̄ events are kept only when a top and its three decay
quarks lie within ΔR < 0.8 of the jet axis (label 1), jets from QCD dijets are all kept (label 0).
Each jet stores its leading ``max_constituents`` constituents, pT-descending, as (E, px, py, pz).

HDF5 layout (one group per split, ``train``/``val``/``test``, by a seeded shuffle)::

    /<split>/p4              float32 [n_jets, max_constituents, 4]  (E, px, py, pz) in GeV, zero-padded
    /<split>/n_constituents  int32   [n_jets]  stored constituents (mask = index < n_constituents)
    /<split>/label           int8    [n_jets]  1 = top, 0 = QCD
    /<split>/event           uint64  [n_jets]  event number within its process
    /<split>/observables/*   float32 [n_jets]  pt, eta, phi, mass, msoftdrop, tau1, tau2, tau3, tau21, tau32
                             (GeV for pt and masses) and int32 n_constituents (all constituents)

File attributes record the variation (``nominal``/``alternative``), the Pythia settings, seeds,
event counts and the selection. :func:`load_dataset` reads one split back.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import awkward as ak
import numpy as np

from ..errors import InputFileError, InvalidInputError
from .clustering import JetConfig, cluster_jets, gather_constituents, jet_observables, top_matched
from .pythia import EventBatch, GeneratorConfig, generate_events, pythia_settings
from .runner import GenerationSummary, Task, TaskOutput, make_tasks, run_tasks

__all__ = [
    "SPLITS",
    "LABELS",
    "FORMAT",
    "DatasetConfig",
    "JetSample",
    "select_jets",
    "write_dataset",
    "load_dataset",
    "generate_dataset",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Class label of each process.
LABELS: dict[str, int] = {"qcd": 0, "ttbar": 1}

#: Value of the ``format`` attribute of dataset files.
FORMAT = "coffea-lorentz-jets/1"


@dataclass(frozen=True, kw_only=True)
class DatasetConfig:
    """Jet selection, padding and splitting of a dataset.

    Attributes:
        min_pt_gev, max_pt_gev: the jet pT window in GeV.
        max_abs_eta: the largest jet |η|.
        max_constituents: constituents stored per jet (the hardest ones).
        max_jets_per_event: only the leading jets of an event are considered.
        split_fractions: fractions of train, val, test (sum 1).
        balance: keep equally many jets of each process (the first ones generated).
    """

    min_pt_gev: float = 550.0
    max_pt_gev: float = 650.0
    max_abs_eta: float = 2.0
    max_constituents: int = 200
    max_jets_per_event: int = 2
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    balance: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.min_pt_gev < self.max_pt_gev:
            raise InvalidInputError(
                f"DatasetConfig: expected 0 <= min_pt_gev < max_pt_gev, got {self.min_pt_gev}, {self.max_pt_gev}"
            )
        if self.max_constituents < 1 or self.max_jets_per_event < 1:
            raise InvalidInputError(
                "DatasetConfig: expected max_constituents >= 1 and max_jets_per_event >= 1, "
                f"got {self.max_constituents}, {self.max_jets_per_event}"
            )
        fractions = tuple(float(f) for f in self.split_fractions)
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
            raise InvalidInputError(
                f"DatasetConfig.split_fractions: expected 3 non-negative fractions summing to 1, got {fractions}"
            )
        object.__setattr__(self, "split_fractions", fractions)


@dataclass(frozen=True)
class JetSample:
    """Selected jets.

    Attributes:
        p4: float32 [n_jets, max_constituents, 4] constituents as (E, px, py, pz) in GeV,
            pT-descending, zero-padded.
        n_constituents: int32 [n_jets] stored constituents per jet.
        label: int8 [n_jets] 1 = top, 0 = QCD.
        event: uint64 [n_jets] event number.
        observables: float32/int32 [n_jets] arrays from
            :func:`~coffea_lorentz.generate.clustering.jet_observables`.
    """

    p4: np.ndarray
    n_constituents: np.ndarray
    label: np.ndarray
    event: np.ndarray
    observables: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.label)

    def take(self, index: np.ndarray) -> JetSample:
        """The jets at ``index`` (int array), in that order."""
        return JetSample(
            p4=self.p4[index],
            n_constituents=self.n_constituents[index],
            label=self.label[index],
            event=self.event[index],
            observables={k: v[index] for k, v in self.observables.items()},
        )

    @staticmethod
    def concatenate(samples: Sequence[JetSample]) -> JetSample:
        """One sample with the jets of ``samples`` in order (at least one sample)."""
        return JetSample(
            p4=np.concatenate([s.p4 for s in samples]),
            n_constituents=np.concatenate([s.n_constituents for s in samples]),
            label=np.concatenate([s.label for s in samples]),
            event=np.concatenate([s.event for s in samples]),
            observables={k: np.concatenate([s.observables[k] for s in samples]) for k in samples[0].observables},
        )


def select_jets(batch: EventBatch, jet_config: JetConfig, config: DatasetConfig, *, process: str) -> JetSample:
    """The jets of an :class:`~coffea_lorentz.generate.pythia.EventBatch` that enter the dataset."""
    if process not in LABELS:
        raise InvalidInputError(f"select_jets: process expected one of {tuple(LABELS)}, got {process!r}")
    jets = cluster_jets(batch.particles, replace(jet_config, min_pt_gev=config.min_pt_gev))
    p4 = jets.p4[:, : config.max_jets_per_event]
    index = jets.constituent_index[:, : config.max_jets_per_event]
    pt = np.hypot(p4.px, p4.py)
    eta = np.arcsinh(p4.pz / pt)
    keep = (pt < config.max_pt_gev) & (abs(eta) < config.max_abs_eta)
    if process == "ttbar":
        keep = keep & top_matched(p4, batch.top_partons, jet_config.radius)
    index = index[keep]
    event = np.repeat(np.asarray(batch.event, dtype=np.uint64), np.asarray(ak.sum(keep, axis=1), dtype=np.int64))
    constituents = gather_constituents(batch.particles, index)
    observables = jet_observables(constituents, jet_config)
    stored = constituents[:, : config.max_constituents]
    n_stored = np.asarray(ak.num(stored, axis=1), dtype=np.int32)
    padded = ak.pad_none(stored, config.max_constituents, axis=1, clip=True)
    p4_array = np.zeros((len(stored), config.max_constituents, 4), dtype=np.float32)
    for k, name in enumerate(("E", "px", "py", "pz")):
        if len(stored):
            p4_array[:, :, k] = ak.to_numpy(ak.fill_none(padded[name], 0.0)).astype(np.float32)
    return JetSample(
        p4=p4_array,
        n_constituents=n_stored,
        label=np.full(len(stored), LABELS[process], dtype=np.int8),
        event=event,
        observables=observables,
    )


def _split_sizes(n_jets: int, fractions: tuple[float, float, float]) -> list[int]:
    n_train = int(round(fractions[0] * n_jets))
    n_val = int(round(fractions[1] * n_jets))
    n_train = min(n_train, n_jets)
    n_val = min(n_val, n_jets - n_train)
    return [n_train, n_val, n_jets - n_train - n_val]


def write_dataset(
    path: str | os.PathLike, sample: JetSample, *, seed: int, config: DatasetConfig, attrs: dict[str, object]
) -> dict[str, int]:
    """Shuffle ``sample`` with ``seed``, split it and write the HDF5 file ``path`` atomically.

    Returns the number of jets of each split.
    """
    import h5py

    path = Path(path)
    if not path.parent.is_dir():
        raise InputFileError(str(path), f"output directory {path.parent} does not exist")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1000,)))
    order = rng.permutation(len(sample))
    sizes = _split_sizes(len(sample), config.split_fractions)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    counts: dict[str, int] = {}
    try:
        with h5py.File(temporary, "w") as output:
            output.attrs["format"] = FORMAT
            for key, value in attrs.items():
                output.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value)
            for split, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:]):
                part = sample.take(order[lo:hi])
                group = output.create_group(split)
                chunk_jets = max(1, min(len(part), 256))
                group.create_dataset(
                    "p4",
                    data=part.p4,
                    chunks=(chunk_jets, config.max_constituents, 4),
                    compression="gzip",
                    compression_opts=4,
                    shuffle=True,
                )
                columns = {"n_constituents": part.n_constituents, "label": part.label, "event": part.event}
                for name, values in columns.items():
                    group.create_dataset(name, data=values, compression="gzip", shuffle=True)
                observables = group.create_group("observables")
                for name, values in part.observables.items():
                    observables.create_dataset(name, data=values, compression="gzip", shuffle=True)
                counts[split] = len(part)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return counts


def load_dataset(
    path: str | os.PathLike, split: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Read one split of a dataset file.

    Returns ``(p4, mask, label, observables)``: p4 float32 [n_jets, max_constituents, 4] as
    (E, px, py, pz) in GeV; mask bool [n_jets, max_constituents], True = real constituent;
    label int8 [n_jets] (1 = top, 0 = QCD); observables: name → [n_jets] arrays.
    """
    import h5py

    if split not in SPLITS:
        raise InvalidInputError(f"load_dataset: split expected one of {SPLITS}, got {split!r}")
    path = Path(path)
    if not path.is_file():
        raise InputFileError(str(path), "no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise InputFileError(str(path), f"not an HDF5 file ({err})") from err
    with handle:
        if handle.attrs.get("format") != FORMAT:
            found = handle.attrs.get("format")
            raise InputFileError(str(path), f"format attribute expected {FORMAT!r}, got {found!r}")
        group = handle[split]
        p4 = np.asarray(group["p4"][...], dtype=np.float32)
        n_constituents = np.asarray(group["n_constituents"][...])
        label = np.asarray(group["label"][...])
        observables = {name: np.asarray(data[...]) for name, data in group["observables"].items()}
    mask = np.arange(p4.shape[1])[np.newaxis, :] < n_constituents[:, np.newaxis]
    return p4, mask, label, observables


def _settings_without_seed(generator: GeneratorConfig) -> list[str]:
    return [line for line in pythia_settings(generator, 1) if not line.startswith("Random:seed")]


def _dataset_task(task: Task, jet_config: JetConfig, config: DatasetConfig) -> TaskOutput:
    events = generate_events(task.generator, n_events=task.n_events, seed=task.seed, first_event=task.first_event)
    samples = [select_jets(batch, jet_config, config, process=task.generator.process) for batch in events]
    sample = JetSample.concatenate(samples)
    return TaskOutput(payload=sample, n_events=task.n_events, n_jets=len(sample), cpu_s=0.0)


def generate_dataset(
    path: str | os.PathLike,
    *,
    generators: Sequence[GeneratorConfig],
    n_events: int | Mapping[str, int],
    seed: int,
    workers: int = 1,
    jet_config: JetConfig = JetConfig(),
    config: DatasetConfig = DatasetConfig(),
    events_per_task: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> GenerationSummary:
    """Generate ``n_events`` events of each of ``generators``, select jets and write the dataset ``path``.

    ``n_events`` is one count for every generator or a mapping process → count (fewer QCD than
    tt̄ events fill a balanced dataset without waste: QCD yields more selected jets per event).

    All generators must share one variation (all nominal or all alternative). The output depends
    on ``seed`` and ``events_per_task`` only, not on ``workers``. ``progress(done, total)`` is
    called after each task.
    """
    if not generators:
        raise InvalidInputError("generate_dataset: expected at least one generator configuration, got none")
    processes = [g.process for g in generators]
    if len(set(processes)) != len(processes):
        raise InvalidInputError(f"generate_dataset: each process at most once, got {processes}")
    variations = {g.variation for g in generators}
    if len(variations) != 1:
        raise InvalidInputError(
            f"generate_dataset: generators mix variations {sorted(variations)}; write one file per variation"
        )
    if isinstance(n_events, Mapping):
        if sorted(n_events) != sorted(processes):
            raise InvalidInputError(
                f"generate_dataset: n_events must name each of {processes}, got {sorted(n_events)}"
            )
        events = {process: int(n_events[process]) for process in processes}
    else:
        events = {process: int(n_events) for process in processes}
    start = time.perf_counter()
    tasks = [
        task
        for generator in generators
        for task in make_tasks(generator, n_events=events[generator.process], seed=seed,
                               events_per_task=events_per_task)
    ]
    outputs = run_tasks(_dataset_task, tasks, workers=workers, extra=(jet_config, config), progress=progress)
    selected = {
        g.process: JetSample.concatenate(
            [output.payload for output, task in zip(outputs, tasks) if task.generator.process == g.process]
        )
        for g in generators
    }
    per_process = dict(selected)
    if config.balance and len(per_process) > 1:
        n_keep = min(len(s) for s in per_process.values())
        per_process = {p: s.take(np.arange(n_keep)) for p, s in per_process.items()}
    sample = JetSample.concatenate(list(per_process.values()))
    attrs = {
        "variation": generators[0].variation,
        "seed": seed,
        "events_per_task": events_per_task,
        "n_events": json.dumps(events),
        "n_jets": json.dumps({p: len(s) for p, s in per_process.items()}),
        "labels": json.dumps(LABELS),
        "pythia_settings": json.dumps({g.process: _settings_without_seed(g) for g in generators}),
        "generator": json.dumps({g.process: asdict(g) for g in generators}),
        "jet_config": json.dumps(asdict(jet_config)),
        "dataset_config": json.dumps(asdict(config)),
    }
    write_dataset(path, sample, seed=seed, config=config, attrs=attrs)
    return GenerationSummary(
        path=str(path),
        n_events=dict(events),
        n_jets={p: len(s) for p, s in selected.items()},
        n_written={p: len(s) for p, s in per_process.items()},
        wall_s=time.perf_counter() - start,
        core_s=sum(o.cpu_s for o in outputs),
        size_bytes=Path(path).stat().st_size,
        workers=workers,
    )
