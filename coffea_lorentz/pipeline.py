"""One chunk through the whole flow: read → batch → infer → unflatten.

:func:`tag_events` is what a coffea processor calls per chunk; it is also usable directly on a
NanoEvents array in a notebook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import awkward as ak
import numpy as np

from .batch import BatchConfig, make_batches, scatter, unflatten
from .infer.base import Backend
from .read import JetConstituents, jet_constituents

__all__ = ["TaggedChunk", "tag_events", "score_branch"]


def score_branch(tagger: str) -> str:
    """Name of the per-jet score field of ``tagger`` (written as ``FatJet_<tagger>_score``)."""
    return f"{tagger}_score"


@dataclass(frozen=True)
class TaggedChunk:
    """Scores of one chunk.

    Attributes:
        jets: the constituents that were scored.
        scores: field name → jagged [n_events][jets] float32 probability of class 1 (signal);
            NaN for a jet with no constituents.
    """

    jets: JetConstituents
    scores: dict[str, ak.Array]

    def summary(self, source: str, output: str) -> dict:
        """The processor's accumulator for this chunk: counts, the output file, the input file."""
        return {
            "events": self.jets.n_events,
            "jets": self.jets.total_jets,
            "constituents": int(self.jets.n_constituents.sum()),
            "outputs": [output],
            "files": {source},
        }


def tag_events(events: ak.Array, backends: dict[str, Backend], *, batch_config: BatchConfig = BatchConfig(),
               source: str = "<events>", signal_class: int = 1) -> TaggedChunk:
    """Score every ``FatJet`` of ``events`` with each backend in ``backends`` (tagger name → backend)."""
    jets = jet_constituents(events, source=source)
    batches = make_batches(jets, batch_config)
    scores = {}
    for tagger, backend in backends.items():
        probabilities = scatter(batches, backend.infer_batches(batches), jets.total_jets) if batches else None
        if probabilities is None:
            per_jet = np.full(jets.total_jets, np.nan, dtype=np.float32)
        else:
            per_jet = probabilities[:, signal_class]
        scores[score_branch(tagger)] = unflatten(per_jet, jets.n_jets)
    return TaggedChunk(jets=jets, scores=scores)
