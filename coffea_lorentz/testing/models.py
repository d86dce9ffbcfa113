"""Small models a user could bring, for tests of the model-you-bring path.

:class:`JetMassModel` takes ``pf_vectors`` float32 [B, 4, P] as (px, py, pz, E) in GeV and
``pf_mask`` float32 [B, 1, P] (1 = real constituent) and gives two class probabilities [B, 2]
from the jet's invariant mass: Lorentz-invariant, permutation-invariant and blind to padding, so
the symmetry checks have a known answer. It scripts with ``torch.jit.script`` and exports to ONNX.
"""

from __future__ import annotations

import torch

__all__ = ["JetMassModel", "write_jet_mass_model"]


class JetMassModel(torch.nn.Module):
    """Two classes from the jet mass: softmax of ∓(½ log(1 + m²/GeV²) − 4)."""

    def forward(self, pf_vectors: torch.Tensor, pf_mask: torch.Tensor) -> torch.Tensor:
        jet = (pf_vectors * pf_mask).sum(-1)
        mass2 = jet[:, 3] ** 2 - jet[:, 0] ** 2 - jet[:, 1] ** 2 - jet[:, 2] ** 2
        logit = 0.5 * torch.log1p(mass2.clamp(min=0)) - 4.0
        return torch.softmax(torch.stack([-logit, logit], dim=-1), dim=-1)


def write_jet_mass_model(folder, *, length: int = 40):
    """Save :class:`JetMassModel` as TorchScript ``folder/mass.pt`` with its spec ``folder/mass.json``
    (weaver layout: ``pf_vectors`` and ``pf_mask`` of ``length`` constituents, classes light and heavy);
    returns the model's path."""
    import json
    from pathlib import Path

    folder = Path(folder)
    torch.jit.script(JetMassModel().eval()).save(str(folder / "mass.pt"))
    (folder / "mass.json").write_text(json.dumps({
        "input_names": ["pf_vectors", "pf_mask"], "output_names": ["softmax"],
        "pf_vectors": {"var_names": ["part_px", "part_py", "part_pz", "part_energy"], "var_length": length},
        "pf_mask": {"var_names": ["part_mask"], "var_length": length}, "classes": ["light", "heavy"]}))
    return folder / "mass.pt"
