"""Generation rates per core: Pythia events/s, and jets/s for PFNano fat jets and the dataset pT window.

CPU seconds (``time.process_time``) are measured in this single process, so the rates hold on a
machine shared with other jobs. Pythia's initialisation is timed separately.

    .venv/bin/python bench/bench_generate.py --events 300
"""

from __future__ import annotations

import argparse
import os
import time

import awkward as ak

from coffea_lorentz.generate import DatasetConfig, GeneratorConfig, JetConfig
from coffea_lorentz.generate.clustering import cluster_jets, gather_constituents, jet_observables
from coffea_lorentz.generate.dataset import select_jets
from coffea_lorentz.generate.pythia import generate_events

#: (name, generator, what is counted as jets)
CASES = (
    ("ttbar inclusive, FatJets > 200 GeV", GeneratorConfig(process="ttbar"), "fatjets"),
    ("qcd pT-hat > 200, FatJets > 200 GeV", GeneratorConfig(process="qcd", pthat_min_gev=200.0), "fatjets"),
    ("ttbar pT-hat > 500, dataset window (matched)", GeneratorConfig(process="ttbar", pthat_min_gev=500.0), "window"),
    ("qcd pT-hat > 500, dataset window", GeneratorConfig(process="qcd", pthat_min_gev=500.0), "window"),
)


def measure(generator: GeneratorConfig, jets: str, n_events: int, seed: int) -> dict[str, float]:
    """CPU seconds of Pythia (init excluded) and of jets + observables, and the jet count, for ``n_events``."""
    jet_config = JetConfig()
    events = generate_events(generator, n_events=n_events, seed=seed)
    start = time.process_time()
    first = next(events)  # includes Pythia's initialisation
    init_and_first_s = time.process_time() - start
    pythia_s, jets_s, n_jets = 0.0, 0.0, 0
    batches = [first]
    start = time.process_time()
    for batch in events:
        batches.append(batch)
    pythia_s = time.process_time() - start
    start = time.process_time()
    for batch in batches:
        if jets == "fatjets":
            clustered = cluster_jets(batch.particles, jet_config)
            jet_observables(gather_constituents(batch.particles, clustered.constituent_index), jet_config)
            n_jets += int(ak.sum(ak.num(clustered.p4)))
        else:
            n_jets += len(select_jets(batch, jet_config, DatasetConfig(), process=generator.process))
    jets_s = time.process_time() - start
    n_timed = n_events - len(first)
    return {
        "init_and_first_batch_s": init_and_first_s,
        "pythia_ms_per_event": 1e3 * pythia_s / max(n_timed, 1),
        "jets_ms_per_event": 1e3 * jets_s / n_events,
        "n_jets": n_jets,
        "events_per_s": n_events / (init_and_first_s + pythia_s + jets_s),
        "jets_per_s": n_jets / (init_and_first_s + pythia_s + jets_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300, help="events per case (default: 300)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} (CPU time is measured, not wall time)")
    for name, generator, jets in CASES:
        r = measure(generator, jets, args.events, args.seed)
        print(
            f"{name:48s} Pythia {r['pythia_ms_per_event']:6.1f} ms/event, jets {r['jets_ms_per_event']:5.1f} ms/event, "
            f"init+first batch {r['init_and_first_batch_s']:4.1f} s | {r['events_per_s']:5.1f} events/s, "
            f"{r['n_jets']:4d} jets = {r['jets_per_s']:5.1f} jets/s per core (jets/event {r['n_jets'] / args.events:.2f})"
        )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
