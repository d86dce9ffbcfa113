"""Train and evaluate taggers on top-tagging datasets (:mod:`coffea_lorentz.generate.dataset` HDF5 files).

- :mod:`.config` — :class:`TrainConfig`: everything that decides a training run (tagger, size,
  budget, seed).
- :mod:`.jets` — :class:`JetSet`, :func:`load_split`, :func:`truncate` and the length-pooled batches.
- :mod:`.evaluation` — :func:`evaluate` / :func:`predict`: scores and metrics of any tagger on a
  split; run twice on the same jets they give the same numbers (fixed batching, no randomness).
- :mod:`.loop` — :func:`fit`: AdamW + cosine (or one-cycle) learning rate, cross-entropy, early
  stopping; :func:`save_checkpoint`.
- :mod:`.plots` — :func:`write_plots`: ROC curve and score histograms.
- :mod:`.workflow` — :func:`train` / :func:`train_on_jets`: the whole run (resumable: the state
  after each epoch in ``resume.pt``); writes ``<tagger>.pt`` (best validation epoch),
  ``metrics.json`` and plots.
- :mod:`.filesets` — :func:`~.filesets.fileset_splits`: signal and background datasets of a coffea
  fileset → labelled splits, read like ``coffea-lorentz run`` reads jets, and the training domain
  (imported on use: ``from coffea_lorentz.train.filesets import fileset_splits``).

Every name is importable from this package, as before the split into modules.
"""

from ..threads import thread_count
from .config import TrainConfig
from .evaluation import BASELINE_OBSERVABLES, EVAL_BATCH_SIZE, evaluate, observable_baselines, predict
from .jets import POOL_BATCHES, SPLITS, JetSet, load_split, truncate
from .jets import _training_batches  # noqa: F401  (the batch plan, exercised directly by the tests)
from .loop import build_model, fit, n_parameters, save_checkpoint
from .plots import write_plots
from .workflow import RESUME_FILE, train, train_on_jets

__all__ = [
    "TrainConfig",
    "JetSet",
    "load_split",
    "truncate",
    "predict",
    "evaluate",
    "observable_baselines",
    "fit",
    "build_model",
    "n_parameters",
    "save_checkpoint",
    "train",
    "train_on_jets",
    "RESUME_FILE",
    "write_plots",
    "thread_count",
    "POOL_BATCHES",
    "SPLITS",
    "EVAL_BATCH_SIZE",
    "BASELINE_OBSERVABLES",
]
