"""In-process inference with torch: the same tagger and weights the Triton server serves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..batch import Batch
from ..errors import InferenceError
from ..threads import thread_count
from .base import Backend

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """Runs tagger ``tagger`` in this process and returns softmax probabilities.

    Args:
        tagger: a name from :func:`coffea_lorentz.models.available`, or a ``"package.module:Class"``
            target (built the same way in every process, Dask workers included).
        weights: state-dict file; default: the tagger's shipped weights (or seeded initial ones).
        device: torch device, ``"cpu"`` by default; ``"cuda"`` where a GPU is present.
        n_threads: torch intra-op threads while this backend computes; the process's previous
            count is restored after each call (:func:`coffea_lorentz.threads.thread_count`), so
            the setting never leaks into the rest of the process. None leaves torch's count alone.
    """

    _lazy_attributes = ("_model",)

    def __init__(self, tagger: str, *, weights: str | None = None, device: str = "cpu", n_threads: int | None = None):
        self.tagger = tagger
        self.weights = weights
        self.device = device
        self.n_threads = n_threads
        self._model: torch.nn.Module | None = None

    @property
    def model(self) -> torch.nn.Module:
        """The tagger wrapped with softmax, built on first use in this process."""
        if self._model is None:
            from ..export import ScoredTagger
            from ..models import pretrained

            self._model = ScoredTagger(pretrained(self.tagger, weights=self.weights)).to(self.device).eval()
        return self._model

    def infer_batches(self, batches: Sequence[Batch]) -> list[np.ndarray]:
        model = self.model
        outputs = []
        with thread_count(self.n_threads), torch.inference_mode():
            for batch in batches:
                p4 = torch.from_numpy(batch.p4).to(self.device)
                mask = torch.from_numpy(batch.mask).to(self.device)
                try:
                    probabilities = model(p4, mask)
                except RuntimeError as err:
                    raise InferenceError(
                        f"tagger {self.tagger!r} failed on p4 {tuple(p4.shape)}, mask {tuple(mask.shape)}: {err}"
                    ) from err
                outputs.append(probabilities.float().cpu().numpy())
        return outputs
