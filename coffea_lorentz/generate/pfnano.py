"""Output A: generated events as PFNano-layout ROOT files that coffea's ``PFNanoAODSchema`` reads.

One ``Events`` tree with the branches of the CMS PFNano layout that jet taggers use:

- ``run``, ``luminosityBlock`` (uint32; the luminosity block is the generation task + 1), ``event`` (uint64);
- ``nFatJet``, ``FatJet_{pt,eta,phi,mass,msoftdrop,tau1,tau2,tau3}`` (float32, GeV) and
  ``FatJet_nConstituents`` (int32): anti-kT R = 0.8 jets above ``JetConfig.min_pt_gev``, pT-ordered;
  ``FatJet_topMatched`` (bool, not a CMS branch): a top and its three decay quarks lie within ΔR < R;
- ``nPFCands``, ``PFCands_{pt,eta,phi,mass}`` (float32) and ``PFCands_{pdgId,charge}`` (int32): every
  visible stable particle within the acceptance, pT-ordered; ``pdgId`` is the particle-flow category
  (±11, ±13, ±211, 22, 130) as in CMS PF candidates, see :func:`~coffea_lorentz.generate.pythia.pf_pdg_id`;
- ``nFatJetPFCands``, ``FatJetPFCands_{jetIdx,pFCandsIdx}`` (int32) and ``FatJetPFCands_pt``: jet
  constituents, stored jet after jet (pT-ordered within a jet) so that both the older layout
  (``jetIdx``) and the newer one (``FatJet_nConstituents``) work — ``events.FatJet.constituents`` included;
- ``nGenPart``, ``GenPart_{pt,eta,phi,mass}`` (float32), ``GenPart_{pdgId,status,genPartIdxMother,statusFlags}``
  (int32): outgoing hard-process partons, top and W decay products, last copies of t and W.

Counts branches (``nFatJet`` …) are int32 here (uint32 in CMS files); coffea reads both alike.
The file is written to a temporary name next to the target and renamed when complete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import awkward as ak
import numpy as np

from ..errors import InputFileError
from .clustering import JetConfig, cluster_jets, gather_constituents, jet_observables, top_matched
from .pythia import EventBatch, GeneratorConfig, concatenate_batches, generate_events, pf_pdg_id
from .runner import GenerationSummary, Task, TaskOutput, make_tasks, run_tasks

__all__ = ["pfnano_columns", "write_pfnano", "generate_pfnano", "TREE_NAME"]

TREE_NAME = "Events"


def _kinematics(px, py, pz, energy) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.where(pt > 0, pz / np.where(pt > 0, pt, 1.0), 0.0))
    phi = np.arctan2(py, px)
    mass = np.sqrt(np.maximum(energy**2 - pt**2 - pz**2, 0.0))
    return pt, eta, phi, mass


def pfnano_columns(
    batch: EventBatch, jet_config: JetConfig, *, luminosity_block: int = 1
) -> dict[str, object]:
    """One chunk of the ``Events`` tree from an :class:`~coffea_lorentz.generate.pythia.EventBatch`.

    Returns a dict for ``uproot``: ``run``/``luminosityBlock``/``event`` numpy arrays [n_events]
    and awkward record arrays ``FatJet``, ``PFCands``, ``FatJetPFCands``, ``GenPart`` [n_events][...].
    """
    particles = batch.particles
    n_events = len(batch)
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
    fatjet = ak.unflatten(ak.zip(fatjet_flat), n_jets)

    index = jets.constituent_index
    jet_idx = ak.broadcast_arrays(ak.local_index(index, axis=1), index)[0]
    flat_cand_idx = np.asarray(ak.flatten(index, axis=None), dtype=np.int64)
    n_in_event = np.asarray(ak.sum(ak.num(index, axis=2), axis=1), dtype=np.int64)
    pf = {name: np.asarray(ak.flatten(particles[name]), dtype=np.float64) for name in ("px", "py", "pz", "E")}
    pt, eta, phi, mass = _kinematics(pf["px"], pf["py"], pf["pz"], pf["E"])
    n_particles = np.asarray(ak.num(particles, axis=1), dtype=np.int64)
    starts = np.repeat(np.concatenate([[0], np.cumsum(n_particles)[:-1]]), n_in_event)
    fatjet_cands = ak.unflatten(
        ak.zip(
            {
                "pt": pt[flat_cand_idx + starts].astype(np.float32),
                "jetIdx": np.asarray(ak.flatten(jet_idx, axis=None), dtype=np.int32),
                "pFCandsIdx": flat_cand_idx.astype(np.int32),
            }
        ),
        n_in_event,
    )

    charge = np.asarray(ak.flatten(particles.charge), dtype=np.int32)
    pdg_id = np.asarray(ak.flatten(particles.pdg_id), dtype=np.int32)
    pfcands = ak.unflatten(
        ak.zip(
            {
                "pt": pt.astype(np.float32),
                "eta": eta.astype(np.float32),
                "phi": phi.astype(np.float32),
                "mass": mass.astype(np.float32),
                "pdgId": pf_pdg_id(pdg_id, charge),
                "charge": charge,
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
    return {
        "run": np.ones(n_events, dtype=np.uint32),
        "luminosityBlock": np.full(n_events, luminosity_block, dtype=np.uint32),
        "event": np.asarray(batch.event, dtype=np.uint64),
        "FatJet": fatjet,
        "PFCands": pfcands,
        "FatJetPFCands": fatjet_cands,
        "GenPart": genpart,
    }


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


def _pfnano_task(task: Task, jet_config: JetConfig) -> TaskOutput:
    events = generate_events(task.generator, n_events=task.n_events, seed=task.seed, first_event=task.first_event)
    columns = pfnano_columns(concatenate_batches(list(events)), jet_config, luminosity_block=task.index + 1)
    n_jets = int(ak.sum(ak.num(columns["FatJet"])))
    return TaskOutput(payload=columns, n_events=task.n_events, n_jets=n_jets, cpu_s=0.0)


def generate_pfnano(
    path: str | os.PathLike,
    *,
    generator: GeneratorConfig,
    n_events: int,
    seed: int,
    workers: int = 1,
    jet_config: JetConfig = JetConfig(),
    events_per_task: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> GenerationSummary:
    """Generate ``n_events`` events of ``generator`` and write them to the PFNano file ``path``.

    The output depends on ``seed`` and ``events_per_task`` only, not on ``workers``.
    ``progress(done, total)`` is called after each task.
    """
    start = time.perf_counter()
    tasks = make_tasks(generator, n_events=n_events, seed=seed, events_per_task=events_per_task)
    outputs = run_tasks(_pfnano_task, tasks, workers=workers, extra=(jet_config,), progress=progress)
    write_pfnano(path, (output.payload for output in outputs))
    return GenerationSummary(
        path=str(path),
        n_events={generator.process: sum(o.n_events for o in outputs)},
        n_jets={generator.process: sum(o.n_jets for o in outputs)},
        wall_s=time.perf_counter() - start,
        core_s=sum(o.cpu_s for o in outputs),
        size_bytes=Path(path).stat().st_size,
        workers=workers,
    )
