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
        jets: the constituents that were scored; ``jets.n_dropped`` [n_jets] counts the
            constituents dropped per jet for non-finite values (see :mod:`coffea_lorentz.read`).
        scores: field name → jagged [n_events][jets] float32 probability of class 1 (signal);
            NaN for a jet with no constituents, including one whose constituents were all dropped.
    """

    jets: JetConstituents
    scores: dict[str, ak.Array]

    @property
    def nonfinite_jets(self) -> int:
        """Jets of this chunk that lost at least one constituent to a non-finite value."""
        return int(np.count_nonzero(self.jets.affected_jets))

    @property
    def nonfinite_constituents(self) -> int:
        """Constituents of this chunk dropped for non-finite values."""
        return int(self.jets.n_dropped.sum())

    def first_affected_events(self, limit: int = 5) -> list[int]:
        """Up to ``limit`` (≥ 0; a negative limit gives none) ascending indices, within the chunk, of
        events with a jet that lost constituents to non-finite values.

        Add the chunk's first entry in its file to get the file's entry numbers.
        """
        return [int(i) for i in self.jets.affected_events()[: max(int(limit), 0)]]

    def summary(self, source: str, output: str) -> dict:
        """The processor's accumulator for this chunk: counts, the output file, the input file.

        ``nonfinite_jets`` counts jets with at least one constituent dropped for a non-finite value,
        ``nonfinite_constituents`` the constituents dropped; both add up over chunks.
        """
        return {
            "events": self.jets.n_events,
            "jets": self.jets.total_jets,
            "constituents": int(self.jets.n_constituents.sum()),
            "nonfinite_jets": self.nonfinite_jets,
            "nonfinite_constituents": self.nonfinite_constituents,
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
