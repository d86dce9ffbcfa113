"""``identity``: a model that does no physics, for measuring the serving path itself."""

from __future__ import annotations

import torch

from .base import TaggerModel

__all__ = ["Identity"]


class Identity(TaggerModel, name="identity", symmetry="z_rotation"):  # the mean energy changes under any boost
    """Returns logits ``[0, mean E of real constituents]`` in GeV; no trainable weights, no options.

    Its cost is negligible, so the end-to-end rate with it measures reading, batching, transport
    and writing alone.
    """

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``p4`` [B, N, 4] GeV, ``mask`` [B, N] bool → logits [B, n_classes]."""
        weight = mask.to(p4.dtype)
        energy = torch.where(mask, p4[..., 0], torch.zeros_like(p4[..., 0]))
        mean_energy = energy.sum(-1) / weight.sum(-1).clamp(min=1.0)
        logits = torch.zeros(p4.shape[0], self.n_classes, dtype=p4.dtype, device=p4.device)
        logits[:, -1] = mean_energy
        return logits
