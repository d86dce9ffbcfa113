"""A coffea processor that writes classifier-reweighting weights, per jet and per event, beside tagger scores.

For each reweighter ``NAME`` it adds ``FatJet_weight_NAME`` (one weight per fat jet, from the
nominal-vs-alternative classifier, see :mod:`coffea_lorentz.reweight`) and ``weight_NAME`` (one per
event: the leading fat jet's weight, 1 for events without fat jets). Tagger scores
``FatJet_<tagger>_score`` of any extra ``taggers`` go into the same file. Like
:class:`~coffea_lorentz.processors.tagger.TaggerProcessor`, each chunk becomes one output ROOT file with
``run``, ``luminosityBlock``, ``event`` and ``nFatJet``; the processor is stateless and pickles,
and backends are created lazily on each worker.

The classifier is served like any tagger: in-process torch from the ``reweight_NAME.pt`` file, or
Triton under the model name ``reweight_NAME``. The weight w = f / (1 − f) and its clipping are
computed here from the served probability f, with the ε, w_max and class-size ratio saved beside
the classifier.

Usage::

    from coffea_lorentz.processors.reweight import ReweighterSpec, ReweightProcessor

    spec = ReweighterSpec.from_file("reweighters/reweight_fsr.pt")                 # torch, in-process
    spec = ReweighterSpec.from_file("reweighters/reweight_fsr.pt", kind="triton", url="localhost:8001")
    proc = ReweightProcessor(reweighters=[spec], output_dir="out/")
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
from coffea import processor

from ..batch import BatchConfig
from ..errors import InvalidInputError
from ..infer import BackendSpec, process_backend
from ..pipeline import score_branch, tag_events
from ..reweight.weights import event_weights, reweighter_name, weights_from_probability
from ..write import write_chunk

__all__ = ["ReweighterSpec", "ReweightProcessor", "jet_weight_branch", "event_weight_branch"]


def jet_weight_branch(name: str) -> str:
    """Per-jet field of reweighter ``name`` inside ``FatJet`` (written as ``FatJet_weight_<name>``)."""
    return f"weight_{name}"


def event_weight_branch(name: str) -> str:
    """Per-event branch of reweighter ``name``: ``weight_<name>``."""
    return f"weight_{name}"


@dataclass(frozen=True, kw_only=True)
class ReweighterSpec:
    """One reweighter as plain picklable data.

    Attributes:
        name: short name; branches are ``weight_<name>`` and ``FatJet_weight_<name>``.
        backend: where the classifier runs (its probability of class 1 = alternative is used).
        epsilon: f is clipped to [ε, 1 − ε] before w = f / (1 − f).
        max_weight: w is clipped to [0, max_weight].
        prior_ratio: N_nominal / N_alternative correction of the classifier's odds (see
            :func:`coffea_lorentz.reweight.weights_from_probability`).
    """

    name: str
    backend: BackendSpec
    epsilon: float = 1e-3
    max_weight: float = 10.0
    prior_ratio: float = 1.0

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise InvalidInputError(f"ReweighterSpec.name: expected letters, digits and '_', got {self.name!r}")

    @classmethod
    def from_file(cls, path: str | Path, *, kind: str = "torch", url: str | None = None,
                  name: str | None = None, **options) -> "ReweighterSpec":
        """The reweighter saved at ``path`` (``reweight_<name>.pt``, with its ``.json`` beside it).

        ``kind="torch"`` runs the classifier in-process from the file; ``kind="triton"`` asks the
        server at ``url`` for the model ``reweight_<name>``. ``options`` go to the backend.
        """
        path = Path(path)
        info_path = path.with_suffix(".json")
        if not info_path.is_file():
            raise InvalidInputError(f"reweighter description not found: {info_path} (written by save_reweighter)")
        info = json.loads(info_path.read_text())
        served = info.get("name", path.stem)
        short = name or served.removeprefix("reweight_")
        if kind == "torch":
            backend = BackendSpec.make(info["architecture"], kind="torch", weights=str(path.with_suffix(".pt")), **options)
        else:
            backend = BackendSpec.make(reweighter_name(served), kind=kind, url=url, **options)
        return cls(name=short, backend=backend, epsilon=float(info["epsilon"]), max_weight=float(info["max_weight"]),
                   prior_ratio=float(info.get("prior_ratio", 1.0)))


class ReweightProcessor(processor.ProcessorABC):
    """Writes per-jet and per-event weights (and optional tagger scores), one output file per chunk.

    Args:
        reweighters: one :class:`ReweighterSpec` per reweighting.
        output_dir: folder or fsspec URL the chunk files are written to.
        taggers: tagger backends whose ``FatJet_<tagger>_score`` go into the same files.
        batch_config: truncation, bucket lengths and batch size.
    """

    def __init__(self, *, reweighters: list[ReweighterSpec], output_dir: str | Path,
                 taggers: list[BackendSpec] = (), batch_config: BatchConfig = BatchConfig()):
        self.reweighters = list(reweighters)
        self.taggers = list(taggers)
        if not self.reweighters:
            raise InvalidInputError("ReweightProcessor: expected at least one reweighter, got none")
        keys = [_backend_key(spec.name) for spec in self.reweighters] + [spec.tagger for spec in self.taggers]
        if len(set(keys)) != len(keys):
            raise InvalidInputError(f"ReweightProcessor: reweighter and tagger names must be distinct, got {keys}")
        self.output_dir = str(output_dir)
        self.batch_config = batch_config

    def process(self, events: ak.Array) -> dict:
        source = events.metadata.get("filename", "<events>")
        backends = {spec.tagger: process_backend(spec) for spec in self.taggers}
        backends.update({_backend_key(spec.name): process_backend(spec.backend) for spec in self.reweighters})
        tagged = tag_events(events, backends, batch_config=self.batch_config, source=source)
        jet_branches = {score_branch(spec.tagger): tagged.scores[score_branch(spec.tagger)] for spec in self.taggers}
        event_branches = {}
        for spec in self.reweighters:
            probability = tagged.scores[score_branch(_backend_key(spec.name))]
            flat = weights_from_probability(
                ak.to_numpy(ak.flatten(probability)), epsilon=spec.epsilon, max_weight=spec.max_weight,
                prior_ratio=spec.prior_ratio,
            ).astype(np.float32)
            per_jet = ak.unflatten(flat, tagged.jets.n_jets)
            jet_branches[jet_weight_branch(spec.name)] = per_jet
            event_branches[event_weight_branch(spec.name)] = event_weights(per_jet)
        output = write_chunk(events, self.output_dir, jet_branches=jet_branches, event_branches=event_branches)
        return tagged.summary(source, output)

    def postprocess(self, accumulator: dict) -> dict:
        return accumulator


def _backend_key(name: str) -> str:
    """Key of a reweighter's backend in :func:`tag_events` (distinct from tagger names)."""
    return reweighter_name(name)
