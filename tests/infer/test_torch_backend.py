"""The in-process torch backend: the spec table builds it, its thread setting is scoped, targets build anywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coffea_lorentz.batch import Batch
from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.infer import BACKENDS, BackendSpec, TorchBackend


def _batch(n_jets: int = 3, n_constituents: int = 4) -> Batch:
    """Constituents with E > |p| (GeV): ``p4`` float32 [n_jets, n_constituents, 4], all real."""
    rng = np.random.default_rng(0)
    momentum = rng.normal(scale=20.0, size=(n_jets, n_constituents, 3))
    energy = np.sqrt((momentum**2).sum(-1) + 0.2**2)
    p4 = np.concatenate([energy[..., None], momentum], axis=-1).astype(np.float32)
    return Batch(p4=p4, mask=np.ones((n_jets, n_constituents), bool), jet_index=np.arange(n_jets))


def test_n_threads_applies_inside_a_call_only():
    before = torch.get_num_threads()
    seen = []
    backend = TorchBackend("identity", n_threads=1)
    forward = backend.model.forward

    def spy(p4, mask):
        seen.append(torch.get_num_threads())
        return forward(p4, mask)

    backend.model.forward = spy
    (probabilities,) = backend.infer_batches([_batch()])
    assert probabilities.shape == (3, 2)
    assert seen == [1]
    assert torch.get_num_threads() == before  # the process setting is untouched


def test_spec_table_builds_each_kind():
    from coffea_lorentz.infer.onnx_backend import OnnxTaggerBackend

    assert set(BACKENDS) == {"triton", "torch", "onnx"}
    assert isinstance(BackendSpec.make("identity", kind="torch").create(), TorchBackend)
    assert isinstance(BackendSpec.make("identity", kind="onnx").create(), OnnxTaggerBackend)
    with pytest.raises(InvalidInputError, match="unknown backend kind 'tensorrt'; expected 'triton' or 'torch' or 'onnx'"):
        BackendSpec.make("identity", kind="tensorrt").create()
    with pytest.raises(InvalidInputError, match="needs a server URL"):
        BackendSpec.make("identity", kind="triton").create()


def test_a_module_class_target_builds_without_registration():
    """A tagger named by ``"module:Class"`` builds in any process, as on a Dask worker."""
    spec = BackendSpec.make("coffea_lorentz.models.identity:Identity", kind="torch")
    (probabilities,) = spec.create().infer_batches([_batch()])
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-6)
