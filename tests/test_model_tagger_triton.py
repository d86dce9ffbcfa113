"""``Tagger(PATH, backend="triton")``: a model you bring served by a real Triton server — the local
server the tagger starts with the model built in, or a given ``server=URL`` — scores the real CMS
``pfnano.root`` eager and dask-awkward exactly as ONNX Runtime in-process does."""

from __future__ import annotations

import warnings

import awkward as ak
import numpy as np
import pytest
import torch
from test_user_models import CLASSES, PF_FEATURES, WeaverLike, preprocess_json, weaver_export  # noqa: F401

from coffea_lorentz import Tagger
from coffea_lorentz.errors import ConfigurationError
from coffea_lorentz.testing import server_unavailable_reason

pytestmark = pytest.mark.slow


def _events(path, mode: str):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode=mode).events()


def _flat(scores) -> np.ndarray:
    return np.stack([ak.to_numpy(ak.flatten(scores[name])) for name in CLASSES], axis=1)


def test_a_model_on_triton_eager_and_dask_equals_onnx_in_process(weaver_export, pfnano_file, tmp_path):  # noqa: F811
    if server_unavailable_reason() is not None:
        pytest.skip(f"no local Triton server: {server_unavailable_reason()}")
    events = _events(pfnano_file, "eager")
    expected = _flat(Tagger(str(weaver_export), backend="onnx", classes=CLASSES)(events))
    assert np.isfinite(expected).all(axis=1).sum() > 15

    with Tagger(str(weaver_export), backend="triton", classes=CLASSES, batch_size=7) as tagger:
        assert tagger.backend == "triton" and tagger.server.startswith("127.0.0.1:")
        server = tagger._server
        assert server.is_running()
        eager = tagger(events)
        np.testing.assert_allclose(_flat(eager), expected, atol=1e-5, rtol=0)
        lazy = tagger(_events(pfnano_file, "dask"))
        computed = {name: array.compute(scheduler="sync") for name, array in lazy.items()}
        np.testing.assert_array_equal(_flat(computed), _flat(eager))

        # the same server, given by its address
        given = Tagger(str(weaver_export), server=tagger.server, classes=CLASSES)
        assert given.backend == "triton" and given._server is None
        np.testing.assert_allclose(_flat(given(events)), expected, atol=1e-5, rtol=0)

        # another file under the served name is refused before any event is read
        scripted = torch.jit.script(WeaverLike(len(PF_FEATURES)).eval())
        scripted.save(str(tmp_path / "ts.pt"))
        (tmp_path / "ts.json").write_text(weaver_export.joinpath("preprocess.json").read_text())
        with pytest.raises(ConfigurationError, match="the server serves another model under that name"):
            Tagger(f"{weaver_export.name}={tmp_path / 'ts.pt'}", server=tagger.server)
    assert not server.is_running()
    tagger.close()  # twice is fine

    with pytest.raises(ConfigurationError, match="server= is for backend='triton'"):
        Tagger(str(weaver_export), backend="onnx", server="grpc://127.0.0.1:1")
