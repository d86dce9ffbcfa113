"""Monte Carlo samples for taggers: Pythia 8 events → FastJet jets → PFNano files or jet datasets.

- :mod:`.pythia` — settings (13 TeV tt̄ all-hadronic or QCD dijets, seeds, the alternative
  shower configuration) and the event loop → :class:`EventBatch` (particles + parton truth).
- :mod:`.clustering` — anti-kT jets (R = 0.8 and 0.4), constituents, soft-drop mass, N-subjettiness,
  top matching; FastJet's banner once per run.
- :mod:`.tracks` — generated (not simulated) track parameters of PF candidates: d0, dz, errors, flags.
- :mod:`.pfnano` — output A: PFNano-layout ROOT files read by coffea's ``PFNanoAODSchema`` without a warning.
- :mod:`.dataset` — output B: top-tagging datasets (HDF5, train/val/test) and :func:`load_dataset`.
- :mod:`.runner` — parallel tasks with one seed each; output independent of the worker count.

Pythia 8 (``pythia8mc``) and FastJet (``fastjet``) are optional dependencies
(``pip install 'coffea-lorentz[generate]'``); :func:`load_dataset` needs neither.

Example::

    from coffea_lorentz.generate import GeneratorConfig, generate_dataset, load_dataset

    generators = [GeneratorConfig(process=p, pthat_min_gev=500.0) for p in ("ttbar", "qcd")]
    generate_dataset("jets.h5", generators=generators, n_events=10_000, seed=1, workers=2)
    p4, mask, label, observables = load_dataset("jets.h5", "train")
"""

from ._deps import GeneratorUnavailableError, available
from .clustering import JetConfig
from .dataset import LABELS, SPLITS, DatasetConfig, JetSample, generate_dataset, load_dataset
from .pfnano import generate_pfnano
from .pythia import ALTERNATIVE_SETTINGS, PROCESSES, EventBatch, GeneratorConfig, generate_events
from .runner import GenerationSummary

__all__ = [
    "ALTERNATIVE_SETTINGS",
    "PROCESSES",
    "LABELS",
    "SPLITS",
    "GeneratorConfig",
    "JetConfig",
    "DatasetConfig",
    "EventBatch",
    "JetSample",
    "GenerationSummary",
    "GeneratorUnavailableError",
    "available",
    "generate_events",
    "generate_pfnano",
    "generate_dataset",
    "load_dataset",
]
