"""Pythia 8 settings and event loop: pp collisions at 13 TeV → final-state particles and parton truth.

Two processes are known (:data:`PROCESSES`):

- ``"ttbar"``: ``Top:gg2ttbar`` + ``Top:qqbar2ttbar`` with W → q q̄' forced (``24:onIfAny = 1 2 3 4 5``),
  so both tops decay hadronically (the signal of top tagging);
- ``"qcd"``: ``HardQCD:all`` dijets (the background).

``PhaseSpace:pTHatMin`` sets the minimum transverse momentum of the hard 2 → 2 scattering. The
"alternative" configuration (:data:`ALTERNATIVE_SETTINGS`) lowers the final-state shower coupling
``TimeShower:alphaSvalue`` from the Monash value 0.1365 to 0.120: fewer and softer emissions in
the jets, i.e. a parton-shower variation of the jet substructure, for reweighting studies.

Random numbers: every call of :func:`generate_events` seeds its own Pythia instance
(``Random:setSeed = on``, ``Random:seed = seed``); :func:`task_seeds` derives independent seeds
for parallel tasks from one user seed. Nothing here holds module-level state.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import awkward as ak
import numpy as np

from ..errors import InvalidInputError
from ._deps import require

__all__ = [
    "PROCESSES",
    "ALTERNATIVE_SETTINGS",
    "GeneratorConfig",
    "EventBatch",
    "pythia_settings",
    "task_seeds",
    "generate_events",
    "concatenate_batches",
    "pf_pdg_id",
    "variation_settings",
]

#: Process names understood by :class:`GeneratorConfig`.
PROCESSES: tuple[str, ...] = ("ttbar", "qcd")

#: Settings added on top of the nominal ones in the alternative configuration (FSR αs 0.1365 → 0.120).
ALTERNATIVE_SETTINGS: tuple[str, ...] = ("TimeShower:alphaSvalue = 0.120",)

_PROCESS_SETTINGS: dict[str, tuple[str, ...]] = {
    "ttbar": (
        "Top:gg2ttbar = on",
        "Top:qqbar2ttbar = on",
        "24:onMode = off",
        "24:onIfAny = 1 2 3 4 5",
    ),
    "qcd": ("HardQCD:all = on",),
}

#: Largest seed Pythia accepts (``Random:seed`` range is 0 … 900 000 000; 0 means "default seed").
_MAX_PYTHIA_SEED = 900_000_000

#: Attempts to replace events Pythia failed to generate before giving up on a batch.
_MAX_TOP_UPS = 100

_NEUTRINO_IDS = (12, 14, 16)

# GenPart_statusFlags bits (NanoAOD convention).
_FLAG_IS_PROMPT = 1 << 0
_FLAG_IS_HARD_PROCESS = 1 << 7
_FLAG_FROM_HARD_PROCESS = 1 << 8
_FLAG_IS_FIRST_COPY = 1 << 12
_FLAG_IS_LAST_COPY = 1 << 13


@dataclass(frozen=True, kw_only=True)
class GeneratorConfig:
    """What Pythia generates and which final-state particles are kept.

    Attributes:
        process: ``"ttbar"`` (all-hadronic tt̄) or ``"qcd"`` (dijets).
        pthat_min_gev: ``PhaseSpace:pTHatMin`` in GeV (0 = Pythia's default for ttbar; QCD needs > 0).
        ecm_gev: centre-of-mass energy in GeV (``Beams:eCM``).
        alternative: add :data:`ALTERNATIVE_SETTINGS` (the shower variation).
        max_abs_eta: final-state particles with |η| above this are dropped (tracker-like acceptance).
        min_particle_pt_gev: final-state particles below this pT (GeV) are dropped.
        extra_settings: further Pythia ``readString`` lines, applied last.
    """

    process: str
    pthat_min_gev: float = 0.0
    ecm_gev: float = 13000.0
    alternative: bool = False
    max_abs_eta: float = 2.5
    min_particle_pt_gev: float = 0.0
    extra_settings: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.process not in PROCESSES:
            raise InvalidInputError(f"GeneratorConfig.process: expected one of {PROCESSES}, got {self.process!r}")
        if self.pthat_min_gev < 0:
            raise InvalidInputError(f"GeneratorConfig.pthat_min_gev: expected >= 0 GeV, got {self.pthat_min_gev}")
        if self.process == "qcd" and self.pthat_min_gev <= 0:
            raise InvalidInputError(
                "GeneratorConfig.pthat_min_gev: QCD dijets need a pT-hat threshold > 0 GeV "
                f"(the cross section diverges at 0), got {self.pthat_min_gev}"
            )
        if self.ecm_gev <= 0:
            raise InvalidInputError(f"GeneratorConfig.ecm_gev: expected > 0 GeV, got {self.ecm_gev}")
        if self.max_abs_eta <= 0:
            raise InvalidInputError(f"GeneratorConfig.max_abs_eta: expected > 0, got {self.max_abs_eta}")
        if self.min_particle_pt_gev < 0:
            raise InvalidInputError(
                f"GeneratorConfig.min_particle_pt_gev: expected >= 0 GeV, got {self.min_particle_pt_gev}"
            )
        object.__setattr__(self, "extra_settings", tuple(self.extra_settings))

    @property
    def variation(self) -> str:
        """``"alternative"`` or ``"nominal"``."""
        return "alternative" if self.alternative else "nominal"


@dataclass(frozen=True)
class EventBatch:
    """Generated events, reduced to what the writers need.

    Attributes:
        particles: awkward [n_events][n_particles] records ``{px, py, pz, E}`` (float64, GeV),
            ``pdg_id`` (int32, generator PDG code), ``charge`` (int32, units of e) and the
            production vertex ``{vx, vy, vz}`` (float64, mm; the hard interaction is at the origin,
            decay products of long-lived hadrons start where their parent decayed): stable
            visible particles within the acceptance, sorted by pT (descending) in each event.
        genparts: awkward [n_events][n_gen] records ``{pt, eta, phi, mass}`` (float32, GeV),
            ``pdg_id``, ``status`` (|Pythia status|), ``mother_index`` (index into the same
            event's ``genparts``, -1 = none) and ``status_flags`` (NanoAOD bits), all int32:
            the outgoing hard-process partons, top/W decay products and the last copies of t and W.
        top_partons: awkward [n_events][n_tops][4] records ``{px, py, pz, E}`` (float64, GeV):
            for every top that decayed t → W b → q q̄' b, the top's last copy, then its decay
            quarks (b, q, q̄') as they leave the decays; empty for QCD.
        event: uint64 [n_events] event numbers.
    """

    particles: ak.Array
    genparts: ak.Array
    top_partons: ak.Array
    event: np.ndarray

    def __len__(self) -> int:
        return len(self.event)


def pythia_settings(config: GeneratorConfig, seed: int) -> tuple[str, ...]:
    """The ``readString`` lines for ``config`` with random seed ``seed`` (1 … 900 000 000)."""
    if not 1 <= seed <= _MAX_PYTHIA_SEED:
        raise InvalidInputError(f"Pythia seed: expected 1 … {_MAX_PYTHIA_SEED}, got {seed}")
    settings = [
        "Print:quiet = on",
        "Next:numberCount = 0",
        f"Beams:eCM = {config.ecm_gev:g}",
        *_PROCESS_SETTINGS[config.process],
        "Random:setSeed = on",
        f"Random:seed = {seed}",
    ]
    if config.pthat_min_gev > 0:
        settings.append(f"PhaseSpace:pTHatMin = {config.pthat_min_gev:g}")
    if config.alternative:
        settings.extend(ALTERNATIVE_SETTINGS)
    settings.extend(config.extra_settings)
    return tuple(settings)


def variation_settings(*, shower_alphas: float | None = None, tune: str | None = None) -> tuple[str, ...]:
    """The ``readString`` lines of a generator variation, in the order they must be applied.

    ``tune``: a Pythia ``Tune:pp`` number (``"14"``: Monash, the default; ``"7"`` … ``"32"``) or
    comma-separated hadronisation parameters (``"StringZ:aLund=0.6,StringZ:bLund=0.9"``); a tune
    resets the shower coupling, so it comes first. ``shower_alphas``: the final-state shower
    coupling ``TimeShower:alphaSvalue`` (0.1365 in Monash). Give the lines to
    :attr:`GeneratorConfig.extra_settings`.
    """
    lines: list[str] = []
    if tune is not None:
        text = str(tune).strip()
        if text.isdigit():
            lines.append(f"Tune:pp = {int(text)}")
        else:
            for item in filter(None, (part.strip() for part in text.split(","))):
                key, sep, value = item.partition("=")
                if not sep or ":" not in key or not value.strip():
                    raise InvalidInputError(f"hadronisation tune: expected a Tune:pp number or KEY=VALUE,... with "
                                            f"Pythia keys such as StringZ:aLund=0.6, got {item!r}")
                lines.append(f"{key.strip()} = {value.strip()}")
            if not lines:
                raise InvalidInputError(f"hadronisation tune: got nothing in {tune!r}")
    if shower_alphas is not None:
        if not 0.06 <= shower_alphas <= 0.25:
            raise InvalidInputError(f"shower alpha_s: expected 0.06 … 0.25 (Pythia's range), got {shower_alphas}")
        lines.append(f"TimeShower:alphaSvalue = {shower_alphas:g}")
    return tuple(lines)


def task_seeds(seed: int, n_tasks: int, *, stream: tuple[int, ...] = ()) -> list[int]:
    """``n_tasks`` independent Pythia seeds (1 … 900 000 000) from the user seed ``seed`` (>= 0).

    ``stream`` (small non-negative integers, e.g. process and variation) selects an independent
    sequence for the same user seed.
    """
    if seed < 0:
        raise InvalidInputError(f"seed: expected >= 0, got {seed}")
    if n_tasks < 0:
        raise InvalidInputError(f"n_tasks: expected >= 0, got {n_tasks}")
    sequence = np.random.SeedSequence(seed, spawn_key=tuple(stream))
    states = sequence.generate_state(max(n_tasks, 1), dtype=np.uint64)[:n_tasks]
    return [int(s % _MAX_PYTHIA_SEED) + 1 for s in states]


def pf_pdg_id(pdg_id: np.ndarray, charge: np.ndarray) -> np.ndarray:
    """Generator PDG codes → the particle-flow categories CMS stores in ``PFCands_pdgId`` (int32).

    Electrons ±11 and muons ±13 keep their code; other charged particles become ±211 (charged
    hadron, sign of the charge), photons 22, other neutral particles 130 (neutral hadron).
    """
    pdg_id = np.asarray(pdg_id)
    charge = np.asarray(charge)
    abs_id = np.abs(pdg_id)
    out = np.where(charge > 0, 211, -211).astype(np.int32)
    out = np.where(charge == 0, np.where(abs_id == 22, 22, 130), out)
    lepton = (abs_id == 11) | (abs_id == 13)
    return np.where(lepton, pdg_id, out).astype(np.int32)


def generate_events(
    config: GeneratorConfig,
    *,
    n_events: int,
    seed: int,
    first_event: int = 1,
    batch_size: int = 100,
) -> Iterator[EventBatch]:
    """Generate ``n_events`` events with one Pythia instance seeded with ``seed``, in batches.

    Yields :class:`EventBatch` objects of at most ``batch_size`` events, numbered from ``first_event``.
    Events that Pythia fails to generate are skipped and replaced, so exactly ``n_events`` come out.
    """
    if n_events < 0:
        raise InvalidInputError(f"n_events: expected >= 0, got {n_events}")
    if batch_size < 1:
        raise InvalidInputError(f"batch_size: expected >= 1, got {batch_size}")
    pythia8mc = require("pythia8mc")
    pythia = pythia8mc.Pythia("", False)
    for line in pythia_settings(config, seed):
        if not pythia.readString(line):
            raise InvalidInputError(f"Pythia rejected the setting {line!r} (process {config.process!r})")
    if not pythia.init():
        raise InvalidInputError(f"Pythia failed to initialise with settings {pythia_settings(config, seed)}")
    charges: dict[int, int] = {}
    done = 0
    while done < n_events:
        size = min(batch_size, n_events - done)
        record = pythia.nextBatch(size, "skip")
        top_ups = 0
        while len(record) < size:  # failed events were skipped: replace them
            if top_ups == _MAX_TOP_UPS:
                raise InvalidInputError(
                    f"Pythia produced {len(record)} of {size} events after {_MAX_TOP_UPS} retries "
                    f"(process {config.process!r}, seed {seed}); check the settings"
                )
            record = ak.concatenate([record, pythia.nextBatch(size - len(record), "skip")])
            top_ups += 1
        event = np.arange(first_event + done, first_event + done + size, dtype=np.uint64)
        yield _reduce(record, config, event, pythia.particleData, charges)
        done += size


def concatenate_batches(batches: Sequence[EventBatch]) -> EventBatch:
    """One :class:`EventBatch` holding the events of ``batches`` in order."""
    if not batches:
        raise InvalidInputError("concatenate_batches: expected at least one batch, got none")
    if len(batches) == 1:
        return batches[0]
    return EventBatch(
        particles=ak.concatenate([b.particles for b in batches]),
        genparts=ak.concatenate([b.genparts for b in batches]),
        top_partons=ak.concatenate([b.top_partons for b in batches]),
        event=np.concatenate([b.event for b in batches]),
    )


def _flat(array: ak.Array, dtype: type) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(array)), dtype=dtype)


def _reduce(
    record: ak.Array, config: GeneratorConfig, event: np.ndarray, particle_data, charges: dict[int, int]
) -> EventBatch:
    """Pythia's awkward event record → :class:`EventBatch` (vectorised except for the few truth partons)."""
    prt = record.prt
    n_per_event = np.asarray(ak.num(prt), dtype=np.int64)
    offsets = np.zeros(len(n_per_event) + 1, dtype=np.int64)
    np.cumsum(n_per_event, out=offsets[1:])
    pdg = _flat(prt.id, np.int32)
    status = _flat(prt.status, np.int32)
    px, py, pz, energy = (_flat(prt.p[name], np.float64) for name in ("px", "py", "pz", "e"))
    mass = _flat(prt.m, np.float64)
    # Production vertex (x, y, z, t) in mm, stored by Pythia as a four-vector; none = the origin.
    vx, vy, vz = (_flat(ak.fill_none(prt.vProd[name], 0.0), np.float64) for name in ("px", "py", "pz"))
    event_of = np.repeat(np.arange(len(n_per_event)), n_per_event)

    # Final state: stable, visible, inside the acceptance; then pT-ordered within each event.
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.divide(pz, pt, out=np.full_like(pz, np.inf), where=pt > 0))
    keep = (
        (status > 0)
        & ~np.isin(np.abs(pdg), _NEUTRINO_IDS)
        & (np.abs(eta) < config.max_abs_eta)
        & (pt > config.min_particle_pt_gev)
    )
    (selected,) = np.nonzero(keep)
    selected = selected[np.lexsort((-pt[selected], event_of[selected]))]
    for pid in np.unique(pdg[selected]):
        if int(pid) not in charges:
            charges[int(pid)] = int(round(particle_data.charge(int(pid))))
    lookup_ids = np.fromiter(charges.keys(), dtype=np.int64)
    lookup_charge = np.fromiter(charges.values(), dtype=np.int32)
    order = np.argsort(lookup_ids)
    charge = lookup_charge[order][np.searchsorted(lookup_ids[order], pdg[selected])]
    counts = np.bincount(event_of[selected], minlength=len(n_per_event))
    particles = ak.unflatten(
        ak.zip(
            {
                "px": px[selected],
                "py": py[selected],
                "pz": pz[selected],
                "E": energy[selected],
                "pdg_id": pdg[selected],
                "charge": charge,
                "vx": vx[selected],
                "vy": vy[selected],
                "vz": vz[selected],
            }
        ),
        counts,
    )

    mother1 = _flat(prt.mother1, np.int64)
    daughter1 = _flat(prt.daughter1, np.int64)
    daughter2 = _flat(prt.daughter2, np.int64)
    kin = (px, py, pz, energy, mass)
    gen_rows: list[list[tuple]] = []
    top_rows: list[list[list[tuple]]] = []
    for i in range(len(n_per_event)):
        sl = slice(offsets[i], offsets[i + 1])
        rows, tops = _event_truth(
            pdg[sl], status[sl], mother1[sl], daughter1[sl], daughter2[sl], [k[sl] for k in kin]
        )
        gen_rows.append(rows)
        top_rows.append(tops)
    return EventBatch(
        particles=particles,
        genparts=_genparts_array(gen_rows),
        top_partons=_top_partons_array(top_rows),
        event=event,
    )


def _daughters(i: int, daughter1: np.ndarray, daughter2: np.ndarray) -> list[int]:
    """Pythia's daughter convention: a range when d2 >= d1 > 0, else the non-zero of (d1, d2)."""
    d1, d2 = int(daughter1[i]), int(daughter2[i])
    if d1 > 0 and d2 >= d1:
        return list(range(d1, d2 + 1))
    return [d for d in (d1, d2) if d > 0]


def _last_copy(i: int, pdg: np.ndarray, daughter1: np.ndarray, daughter2: np.ndarray) -> int:
    """Follow ``i`` through its copies (a daughter with the same PDG code) to the last one."""
    while True:
        same = [d for d in _daughters(i, daughter1, daughter2) if pdg[d] == pdg[i]]
        if not same:
            return i
        i = same[0]


def _event_truth(pdg, status, mother1, daughter1, daughter2, kin) -> tuple[list[tuple], list[list[tuple]]]:
    """One event's GenPart rows and top-decay partons (local event-record indices)."""
    px, py, pz, energy, mass = kin
    abs_status = np.abs(status)
    hard = [int(i) for i in np.nonzero((abs_status == 22) | (abs_status == 23))[0]]
    first_copy = _FLAG_IS_PROMPT | _FLAG_IS_HARD_PROCESS | _FLAG_FROM_HARD_PROCESS | _FLAG_IS_FIRST_COPY
    flags: dict[int, int] = {i: first_copy for i in hard}
    tops: list[list[tuple]] = []
    for i in hard:
        if abs(pdg[i]) not in (6, 24):
            continue
        last = _last_copy(i, pdg, daughter1, daughter2)
        flags[last] = flags.get(last, _FLAG_IS_PROMPT | _FLAG_FROM_HARD_PROCESS) | _FLAG_IS_LAST_COPY
        if abs(pdg[i]) != 6:
            continue
        products = _daughters(last, daughter1, daughter2)
        w = [d for d in products if abs(pdg[d]) == 24]
        b = [d for d in products if 1 <= abs(pdg[d]) <= 5]
        if len(w) != 1 or len(b) != 1:
            continue
        w_last = _last_copy(w[0], pdg, daughter1, daughter2)
        quarks = [d for d in _daughters(w_last, daughter1, daughter2) if 1 <= abs(pdg[d]) <= 5]
        if len(quarks) != 2:
            continue
        tops.append([(px[j], py[j], pz[j], energy[j]) for j in (last, b[0], *quarks)])
    stored = sorted(flags)
    position = {index: k for k, index in enumerate(stored)}
    rows = []
    for index in stored:
        mother = int(mother1[index])
        while mother > 0 and mother not in position:
            mother = int(mother1[mother])
        pt = float(np.hypot(px[index], py[index]))
        rows.append(
            (
                pt,
                float(np.arcsinh(pz[index] / pt)) if pt > 0 else float(np.sign(pz[index]) * 1e4),
                float(np.arctan2(py[index], px[index])),
                float(mass[index]),
                int(pdg[index]),
                int(abs_status[index]),
                position.get(mother, -1),
                flags[index],
            )
        )
    return rows, tops


_GEN_FIELDS = ("pt", "eta", "phi", "mass", "pdg_id", "status", "mother_index", "status_flags")
_GEN_DTYPES = (np.float32,) * 4 + (np.int32,) * 4


def _genparts_array(rows: list[list[tuple]]) -> ak.Array:
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    flat = [row for event_rows in rows for row in event_rows]
    columns = {
        name: np.array([row[k] for row in flat], dtype=dtype)
        for k, (name, dtype) in enumerate(zip(_GEN_FIELDS, _GEN_DTYPES))
    }
    return ak.unflatten(ak.zip(columns), counts)


def _top_partons_array(rows: list[list[list[tuple]]]) -> ak.Array:
    n_tops = np.array([len(r) for r in rows], dtype=np.int64)
    flat = np.array([p for event_tops in rows for top in event_tops for p in top], dtype=np.float64).reshape(-1, 4)
    record = ak.zip({name: flat[:, k] for k, name in enumerate(("px", "py", "pz", "E"))})
    per_top = ak.unflatten(record, np.full(int(n_tops.sum()), 4, dtype=np.int64))
    return ak.unflatten(per_top, n_tops)
