"""Output A: generated events as PFNano-layout ROOT files that coffea's ``PFNanoAODSchema`` reads.

One ``Events`` tree with the branches of the CMS PFNano layout that jet taggers use:

- ``run``, ``luminosityBlock`` (uint32; the luminosity block is the generation task + 1), ``event`` (uint64);
- ``nFatJet``, ``FatJet_{pt,eta,phi,mass,msoftdrop,tau1,tau2,tau3}`` (float32, GeV) and
  ``FatJet_nConstituents`` (int32): anti-kT R = 0.8 jets above ``JetConfig.min_pt_gev``, pT-ordered;
  ``FatJet_topMatched`` (bool, not a CMS branch): a top and its three decay quarks lie within ΔR < R;
- ``nJet``, ``Jet_{pt,eta,phi,mass}`` (float32, GeV) and ``Jet_nConstituents`` (int32): anti-kT
  R = 0.4 jets of the same particles above ``ak4_config.min_pt_gev`` (15 GeV, as CMS NanoAOD);
- ``nPFCands``, ``PFCands_{pt,eta,phi,mass}`` (float32) and ``PFCands_{pdgId,charge}`` (int32): every
  visible stable particle within the acceptance, pT-ordered; ``pdgId`` is the particle-flow category
  (±11, ±13, ±211, 22, 130) as in CMS PF candidates, see :func:`~coffea_lorentz.generate.pythia.pf_pdg_id`;
  ``PFCands_{d0,d0Err,dz,dzErr,puppiWeight,trkChi2}`` (float32, cm) and
  ``PFCands_{lostInnerHits,pvAssocQuality,trkQuality}`` (int32): *generated* track parameters (the
  true impact parameter from the production vertex, smeared; no detector simulation), neutral
  candidates with d0 = dz = 0 — see :mod:`coffea_lorentz.generate.tracks` for every value;
- ``nFatJetPFCands``, ``FatJetPFCands_{jetIdx,pFCandsIdx}`` (int32) and ``FatJetPFCands_pt``, and the
  same for ``JetPFCands``: jet constituents, stored jet after jet (index-ordered, so pT-ordered, within
  a jet) so that both the older layout (``jetIdx``) and the newer one (``<Jet>_nConstituents``) work —
  ``events.FatJet.constituents`` and ``events.Jet.constituents`` included;
- ``nGenPart``, ``GenPart_{pt,eta,phi,mass}`` (float32), ``GenPart_{pdgId,status,genPartIdxMother,statusFlags}``
  (int32): outgoing hard-process partons, top and W decay products, last copies of t and W.

NanoEvents resolves every cross-reference index its ``PFNanoAODSchema`` knows
(``Electron_genPartIdx`` → ``GenPart`` …) and warns for each one a file lacks. So that the files
read without a warning, they also hold what the generator does not make, marked as absent rather
than invented (:data:`CROSS_REFERENCE_FIELDS`): ``FatJet``/``Jet`` index branches to electrons, muons,
subjets and generator jets, all −1 (none), and the collections those indices name — ``Electron``,
``Muon``, ``Photon``, ``Tau``, ``LowPtElectron``, ``FsrPhoton``, ``GenVisTau``, ``SV``, ``FatJetSVs``,
``JetSVs``, ``SubJet``, ``SubGenJetAK8``, ``GenJet``, ``GenJetAK8``, ``GenCands``, ``GenJetCands``,
``GenFatJetCands``, ``GenJetSVs``, ``GenFatJetSVs`` — with zero entries in every event. In
particular the files hold no secondary vertices: a model with ``sv_*`` inputs sees no SVs.

Counts branches (``nFatJet`` …) are int32 here (uint32 in CMS files); coffea reads both alike.
The file is written to a temporary name next to the target and renamed when complete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import awkward as ak
import numpy as np

from ..errors import InputFileError, InvalidInputError
from .clustering import (
    JetConfig,
    Jets,
    cluster_jets,
    gather_constituents,
    jet_kinematics,
    jet_observables,
    top_matched,
)
from .pythia import EventBatch, GeneratorConfig, concatenate_batches, generate_events, pf_pdg_id
from .runner import GenerationSummary, Task, TaskOutput, make_tasks, run_tasks
from .tracks import TrackModel, track_parameters

__all__ = ["pfnano_columns", "write_pfnano", "generate_pfnano", "TREE_NAME", "AK4_JETS", "CROSS_REFERENCE_FIELDS"]

TREE_NAME = "Events"

#: The AK4 ``Jet`` collection: anti-kT R = 0.4 above 15 GeV (CMS NanoAOD's threshold).
AK4_JETS = JetConfig(radius=0.4, min_pt_gev=15.0)

#: Collection → index branches (int32) written only so that NanoEvents' cross-references resolve.
#: ``FatJet`` and ``Jet`` hold them per jet (−1: no such object); every other collection here is
#: written with zero entries per event, with ``pt, eta, phi`` (and ``mass`` unless NanoEvents
#: fills it itself; ``charge`` for the charged candidates, ``x, y, z`` for vertices) for the
#: collections of physics objects.
CROSS_REFERENCE_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "FatJet": ("genJetAK8Idx", "subJetIdx1", "subJetIdx2", "electronIdx3SJ", "muonIdx3SJ"),
    "Jet": ("electronIdx1", "electronIdx2", "genJetIdx", "muonIdx1", "muonIdx2"),
    "Electron": ("genPartIdx", "jetIdx", "photonIdx"),
    "LowPtElectron": ("electronIdx", "genPartIdx", "photonIdx"),
    "Muon": ("fsrPhotonIdx", "genPartIdx", "jetIdx"),
    "Photon": ("electronIdx", "genPartIdx", "jetIdx"),
    "Tau": ("genPartIdx", "jetIdx"),
    "FsrPhoton": ("muonIdx",),
    "GenVisTau": ("genPartIdxMother",),
    "SubJet": ("subGenJetAK8Idx",),
    "FatJetSVs": ("jetIdx", "sVIdx"),
    "JetSVs": ("jetIdx", "sVIdx"),
    "GenJetCands": ("jetIdx", "pFCandsIdx"),
    "GenFatJetCands": ("jetIdx", "pFCandsIdx"),
    "GenJetSVs": ("jetIdx", "sVIdx"),
    "GenFatJetSVs": ("jetIdx", "sVIdx"),
    "SV": (),
    "GenJet": (),
    "GenJetAK8": (),
    "GenCands": (),
    "SubGenJetAK8": (),
})

#: Empty collections that are links between collections (index branches only, as in CMS PFNano).
_LINKS = ("FatJetSVs", "JetSVs", "GenJetCands", "GenFatJetCands", "GenJetSVs", "GenFatJetSVs")
#: Collections whose ``mass`` and ``charge`` NanoEvents fills itself (a stored one: replaced, with a warning).
_MASSLESS = ("Photon", "FsrPhoton")
#: Collections NanoEvents reads as charged candidates: they need a ``charge`` branch (int32).
_CHARGED = ("Electron", "LowPtElectron", "Muon", "Tau", "GenVisTau", "GenCands")
#: Collections NanoEvents reads as vertices: they need the position ``x, y, z`` (float32, cm).
_VERTICES = ("SV",)
#: Stream of :class:`numpy.random.SeedSequence` for the track smearing of a task (its Pythia seed is the entropy).
_TRACK_STREAM = 1


def _empty_collection(name: str, n_events: int) -> ak.Array:
    """awkward [n_events][0] records of collection ``name`` (see :data:`CROSS_REFERENCE_FIELDS`)."""
    fields: dict[str, np.ndarray] = {}
    if name not in _LINKS:
        kinematics = ("pt", "eta", "phi") if name in _MASSLESS else ("pt", "eta", "phi", "mass")
        fields.update({field: np.zeros(0, dtype=np.float32) for field in kinematics})
    if name in _CHARGED:
        fields["charge"] = np.zeros(0, dtype=np.int32)
    if name in _VERTICES:
        fields.update({field: np.zeros(0, dtype=np.float32) for field in ("x", "y", "z")})
    fields.update({field: np.zeros(0, dtype=np.int32) for field in CROSS_REFERENCE_FIELDS[name]})
    return ak.unflatten(ak.zip(fields), np.zeros(n_events, dtype=np.int64))


def _links(jets: Jets, particle_pt: np.ndarray, n_particles: np.ndarray) -> ak.Array:
    """``<Jet>PFCands`` records [n_events][n_links]: ``pt`` (float32), ``jetIdx``, ``pFCandsIdx`` (int32).

    ``particle_pt`` is float [n_particles_total] (events flattened), ``n_particles`` int [n_events].
    """
    index = jets.constituent_index
    jet_idx = ak.broadcast_arrays(ak.local_index(index, axis=1), index)[0]
    flat_cand_idx = np.asarray(ak.flatten(index, axis=None), dtype=np.int64)
    n_in_event = np.asarray(ak.sum(ak.num(index, axis=2), axis=1), dtype=np.int64)
    starts = np.repeat(np.concatenate([[0], np.cumsum(n_particles)[:-1]]), n_in_event).astype(np.int64)
    return ak.unflatten(
        ak.zip(
            {
                "pt": particle_pt[flat_cand_idx + starts].astype(np.float32),
                "jetIdx": np.asarray(ak.flatten(jet_idx, axis=None), dtype=np.int32),
                "pFCandsIdx": flat_cand_idx.astype(np.int32),
            }
        ),
        n_in_event,
    )


def _no_match(name: str, n_jets_total: int) -> dict[str, np.ndarray]:
    """The cross-reference index branches of ``FatJet``/``Jet``: int32 [n_jets_total], all −1."""
    return {field: np.full(n_jets_total, -1, dtype=np.int32) for field in CROSS_REFERENCE_FIELDS[name]}


def pfnano_columns(
    batch: EventBatch,
    jet_config: JetConfig,
    *,
    luminosity_block: int = 1,
    seed: int = 1,
    ak4_config: JetConfig = AK4_JETS,
    track_model: TrackModel = TrackModel(),
) -> dict[str, object]:
    """One chunk of the ``Events`` tree from an :class:`~coffea_lorentz.generate.pythia.EventBatch`.

    ``seed`` (>= 0) seeds the track smearing (:mod:`.tracks`). Returns a dict for ``uproot``:
    ``run``/``luminosityBlock``/``event`` numpy arrays [n_events] and awkward record arrays
    ``FatJet``, ``Jet``, ``PFCands``, ``FatJetPFCands``, ``JetPFCands``, ``GenPart`` and the empty
    collections of :data:`CROSS_REFERENCE_FIELDS`, each [n_events][...].
    """
    particles = batch.particles
    n_events = len(batch)
    pf = {name: np.asarray(ak.flatten(particles[name]), dtype=np.float64) for name in ("px", "py", "pz", "E")}
    pt, eta, phi, mass = jet_kinematics(pf["px"], pf["py"], pf["pz"], pf["E"])
    n_particles = np.asarray(ak.num(particles, axis=1), dtype=np.int64)

    jets = cluster_jets(particles, jet_config)
    constituents = gather_constituents(particles, jets.constituent_index)
    observables = jet_observables(constituents, jet_config)
    matched = np.asarray(ak.flatten(top_matched(jets.p4, batch.top_partons, jet_config.radius)), dtype=bool)
    n_jets = np.asarray(ak.num(jets.p4, axis=1), dtype=np.int64)
    fatjet_flat = {
        name: observables[name] for name in ("pt", "eta", "phi", "mass", "msoftdrop", "tau1", "tau2", "tau3")
    }
    fatjet_flat["nConstituents"] = observables["n_constituents"].astype(np.int32)
    fatjet_flat["topMatched"] = matched
    fatjet_flat.update(_no_match("FatJet", int(n_jets.sum())))
    fatjet = ak.unflatten(ak.zip(fatjet_flat), n_jets)

    ak4 = cluster_jets(particles, ak4_config)
    n_ak4 = np.asarray(ak.num(ak4.p4, axis=1), dtype=np.int64)
    ak4_kinematics = jet_kinematics(*(ak.flatten(ak4.p4[name]) for name in ("px", "py", "pz", "E")))
    ak4_flat = {name: value.astype(np.float32) for name, value in zip(("pt", "eta", "phi", "mass"), ak4_kinematics)}
    ak4_flat["nConstituents"] = np.asarray(ak.flatten(ak.num(ak4.constituent_index, axis=2)), dtype=np.int32)
    ak4_flat.update(_no_match("Jet", int(n_ak4.sum())))
    jet = ak.unflatten(ak.zip(ak4_flat), n_ak4)

    charge = np.asarray(ak.flatten(particles.charge), dtype=np.int32)
    pdg_id = np.asarray(ak.flatten(particles.pdg_id), dtype=np.int32)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_TRACK_STREAM,)))
    tracks = track_parameters(
        pt=pt, eta=eta, phi=phi, charge=charge,
        vertex_mm=tuple(np.asarray(ak.flatten(particles[name]), dtype=np.float64) for name in ("vx", "vy", "vz")),
        rng=rng, model=track_model,
    )
    pfcands = ak.unflatten(
        ak.zip(
            {
                "pt": pt.astype(np.float32),
                "eta": eta.astype(np.float32),
                "phi": phi.astype(np.float32),
                "mass": mass.astype(np.float32),
                "pdgId": pf_pdg_id(pdg_id, charge),
                "charge": charge,
                **tracks,
            }
        ),
        n_particles,
    )

    gen = batch.genparts
    genpart = ak.zip(
        {
            "pt": gen.pt,
            "eta": gen.eta,
            "phi": gen.phi,
            "mass": gen.mass,
            "pdgId": gen.pdg_id,
            "status": gen.status,
            "genPartIdxMother": gen.mother_index,
            "statusFlags": gen.status_flags,
        }
    )
    columns: dict[str, object] = {
        "run": np.ones(n_events, dtype=np.uint32),
        "luminosityBlock": np.full(n_events, luminosity_block, dtype=np.uint32),
        "event": np.asarray(batch.event, dtype=np.uint64),
        "FatJet": fatjet,
        "Jet": jet,
        "PFCands": pfcands,
        "FatJetPFCands": _links(jets, pt, n_particles),
        "JetPFCands": _links(ak4, pt, n_particles),
        "GenPart": genpart,
    }
    columns.update({name: _empty_collection(name, n_events) for name in CROSS_REFERENCE_FIELDS if name not in columns})
    return columns


def write_pfnano(path: str | os.PathLike, chunks: Iterable[dict[str, object]]) -> int:
    """Write ``chunks`` (from :func:`pfnano_columns`) as the ``Events`` tree of ``path``, atomically.

    Each chunk becomes one basket per branch. Returns the number of events written.
    """
    import uproot

    path = Path(path)
    if not path.parent.is_dir():
        raise InputFileError(str(path), f"output directory {path.parent} does not exist")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    n_events = 0
    try:
        with uproot.recreate(temporary) as output:
            for chunk in chunks:
                if n_events == 0:
                    output.mktree(TREE_NAME, chunk)
                else:
                    output[TREE_NAME].extend(chunk)
                n_events += len(chunk["event"])
            if n_events == 0:
                raise InputFileError(str(path), "no events to write (expected at least one chunk with events)")
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return n_events


def _pfnano_task(task: Task, jet_config: JetConfig, ak4_config: JetConfig) -> TaskOutput:
    events = generate_events(task.generator, n_events=task.n_events, seed=task.seed, first_event=task.first_event)
    columns = pfnano_columns(concatenate_batches(list(events)), jet_config, luminosity_block=task.index + 1,
                             seed=task.seed, ak4_config=ak4_config)
    n_jets = int(ak.sum(ak.num(columns["FatJet"])))
    return TaskOutput(payload=columns, n_events=task.n_events, n_jets=n_jets, cpu_s=0.0)


def generate_pfnano(
    path: str | os.PathLike,
    *,
    generator: GeneratorConfig | Sequence[GeneratorConfig],
    n_events: int | Sequence[int],
    seed: int,
    workers: int = 1,
    jet_config: JetConfig = JetConfig(),
    ak4_config: JetConfig = AK4_JETS,
    events_per_task: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> GenerationSummary:
    """Generate ``n_events`` events of ``generator`` and write them to the PFNano file ``path``.

    A process mix: ``generator`` a sequence of configurations (one per process) and ``n_events``
    the events of each; their events follow one another in the file, each task with its own
    luminosity block, so (``run``, ``luminosityBlock``, ``event``) stays unique.

    ``jet_config`` defines the ``FatJet`` collection (its count is the summary's jets), ``ak4_config``
    the ``Jet`` collection (only its radius and ``min_pt_gev`` are used).

    The output depends on ``seed`` and ``events_per_task`` only, not on ``workers``.
    ``progress(done, total)`` is called after each task.
    """
    from dataclasses import replace

    start = time.perf_counter()
    generators = [generator] if isinstance(generator, GeneratorConfig) else list(generator)
    counts = [n_events] * len(generators) if isinstance(n_events, int) else list(n_events)
    if not generators or len(counts) != len(generators):
        raise InvalidInputError(f"generate_pfnano: expected one event count per generator, got {len(counts)} counts "
                                f"for {len(generators)} generators")
    processes = [g.process for g in generators]
    if len(set(processes)) != len(processes):
        raise InvalidInputError(f"generate_pfnano: each process once in a mix, got {', '.join(processes)}")
    tasks = [task for config, count in zip(generators, counts)
             for task in make_tasks(config, n_events=count, seed=seed, events_per_task=events_per_task)]
    tasks = [replace(task, index=index) for index, task in enumerate(tasks)]  # one luminosity block each
    outputs = run_tasks(_pfnano_task, tasks, workers=workers, extra=(jet_config, ak4_config), progress=progress)
    write_pfnano(path, (output.payload for output in outputs))
    return GenerationSummary(
        path=str(path),
        n_events={p: sum(o.n_events for t, o in zip(tasks, outputs) if t.generator.process == p) for p in processes},
        n_jets={p: sum(o.n_jets for t, o in zip(tasks, outputs) if t.generator.process == p) for p in processes},
        wall_s=time.perf_counter() - start,
        core_s=sum(o.cpu_s for o in outputs),
        size_bytes=Path(path).stat().st_size,
        workers=workers,
    )
