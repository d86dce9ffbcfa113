"""A coffea processor that writes classifier-reweighting weights, per jet and per event, beside tagger scores.

For each reweighter ``NAME`` it adds ``FatJet_weight_NAME`` (one weight per fat jet, from the
nominal-vs-alternative classifier, see :mod:`coffea_lorentz.reweight`) and ``weight_NAME`` (one per
event: the leading fat jet's weight, 1 for events without fat jets). Tagger scores
``FatJet_<tagger>_score`` of any extra ``taggers`` go into the same file. It is the
:class:`~coffea_lorentz.processors.tagger.TaggerProcessor` with at least one reweighter: one
output ROOT file per chunk with ``run``, ``luminosityBlock``, ``event`` and ``nFatJet``; stateless,
picklable, backends created lazily on each worker.

The classifier is served like any tagger: in-process torch from the ``reweight_NAME.pt`` file, or
Triton under the model name ``reweight_NAME``. The weight w = f / (1 − f) and its clipping are
computed from the served probability f, with the ε, w_max and class-size ratio saved beside the
classifier (:class:`~coffea_lorentz.reweighter.ReweighterSpec`).

Usage::

    from coffea_lorentz.processors.reweight import ReweighterSpec, ReweightProcessor

    spec = ReweighterSpec.from_file("fsr")                                          # shipped, in-process
    spec = ReweighterSpec.from_file("reweighters/reweight_fsr.pt", kind="triton", url="localhost:8001")
    proc = ReweightProcessor(reweighters=[spec], output_dir="out/")
"""

from __future__ import annotations

from pathlib import Path

from ..batch import BatchConfig
from ..errors import InvalidInputError
from ..infer import BackendSpec
from ..reweighter import ReweighterSpec, event_weight_branch, jet_weight_branch
from ..store import OutputStore
from .tagger import TaggerProcessor

__all__ = ["ReweighterSpec", "ReweightProcessor", "jet_weight_branch", "event_weight_branch"]


class ReweightProcessor(TaggerProcessor):
    """Writes per-jet and per-event weights (and optional tagger scores), one output file per chunk.

    Args:
        reweighters: one :class:`ReweighterSpec` per reweighting (at least one).
        output_dir: folder or fsspec URL (or :class:`~coffea_lorentz.store.OutputStore`) the chunk
            files are written to.
        taggers: tagger backends whose ``FatJet_<tagger>_score`` go into the same files.
        batch_config: bucket lengths and batch size (and the taggers' truncation; each reweighter
            keeps the constituents it was trained on).
        **options: further :class:`TaggerProcessor` arguments (``settings``, ``copy_branches``).
    """

    def __init__(self, *, reweighters: list[ReweighterSpec], output_dir: str | Path | OutputStore,
                 taggers: list[BackendSpec] = (), batch_config: BatchConfig = BatchConfig(), **options):
        if not reweighters:
            raise InvalidInputError("ReweightProcessor: expected at least one reweighter, got none")
        super().__init__(backends=list(taggers), output=output_dir, batch_config=batch_config,
                         reweighters=list(reweighters), **options)
