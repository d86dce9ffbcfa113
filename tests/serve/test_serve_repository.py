"""Model repositories: config.pbtxt, repository.json, model.pt and tagger weights."""

from __future__ import annotations

import json

import pytest
import torch

from coffea_lorentz.errors import InvalidInputError, ModelMismatchError
from coffea_lorentz.models import pretrained
from coffea_lorentz.export import ScoredTagger, export_torchscript, load_torchscript
from coffea_lorentz.infer import triton_client
from coffea_lorentz.repository import (
    REPOSITORY_INFO,
    SHA256_PARAMETER,
    ServingOptions,
    build_repository,
    model_config_text,
    read_repository_info,
)


@pytest.fixture(scope="module")
def identity():
    return pretrained("identity")


@pytest.mark.parametrize(
    ("backend", "header", "model_files"),
    [
        ("python", 'backend: "python"', {"model.pt", "model.py"}),
        ("pytorch_libtorch", 'platform: "pytorch_libtorch"', {"model.pt"}),
    ],
)
def test_repository_layout_and_config(tmp_path, identity, backend, header, model_files):
    path = build_repository(
        tmp_path / "repo",
        {"identity": identity},
        backend=backend,
        kind="KIND_GPU",
        max_batch_size=512,
        preferred_batch_sizes=(128, 512),
        max_queue_delay_us=250,
        instance_count=2,
    )
    assert {p.name for p in (path / "identity" / "1").iterdir()} == model_files
    config = (path / "identity" / "config.pbtxt").read_text()
    for expected in (
        'name: "identity"',
        header,
        "max_batch_size: 512",
        "preferred_batch_size: [ 128, 512 ]",
        "max_queue_delay_microseconds: 250",
        'name: "p4"\n    data_type: TYPE_FP32\n    dims: [ -1, 4 ]',
        'name: "mask"\n    data_type: TYPE_BOOL\n    dims: [ -1 ]',
        'name: "score"\n    data_type: TYPE_FP32\n    dims: [ 2 ]',
        "count: 2\n    kind: KIND_GPU",
    ):
        assert expected in config
    info = read_repository_info(path)
    assert info["taggers"] == ["identity"]
    assert info["output"] == "score"
    assert info["models"]["identity"]["n_classes"] == 2
    assert info["models"]["identity"]["export_parity_max_abs_diff"] <= 1e-5
    assert info["serving"]["backend"] == backend


def test_served_model_matches_eager_and_has_forward_argument_names(tmp_path):
    """The libtorch backend maps inputs to forward arguments by name: they must be p4, mask."""
    tagger = pretrained("identity")
    path = build_repository(tmp_path / "repo", {"tagger": tagger})
    exported = load_torchscript(path / "tagger" / "1" / "model.pt")
    assert [argument.name for argument in exported.forward.schema.arguments[1:]] == ["p4", "mask"]
    p4 = torch.randn(3, 6, 4) * 20
    p4[..., 0] = p4[..., 1:].norm(dim=-1) + 1.0
    mask = torch.tensor([[True] * 6, [True] * 2 + [False] * 4, [True] + [False] * 5])
    with torch.no_grad():
        torch.testing.assert_close(exported(p4, mask), ScoredTagger(tagger)(p4, mask), atol=1e-6, rtol=0)


def test_exported_file_is_copied(tmp_path, identity):
    exported_path = tmp_path / "exported.pt"
    export_torchscript(identity, exported_path)
    path = build_repository(tmp_path / "repo", {"from_file": exported_path})
    assert (path / "from_file" / "1" / "model.pt").read_bytes() == exported_path.read_bytes()
    assert read_repository_info(path)["models"]["from_file"]["export_parity_max_abs_diff"] is None


def test_rebuild_replaces_repository_and_leaves_no_staging(tmp_path, identity):
    build_repository(tmp_path / "repo", {"first": identity})
    build_repository(tmp_path / "repo", {"second": identity})
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == [REPOSITORY_INFO, "second"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_refuses_to_replace_other_directory(tmp_path, identity):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("x")
    with pytest.raises(InvalidInputError, match="not a model repository"):
        build_repository(tmp_path / "data", {"identity": identity})
    assert (tmp_path / "data" / "keep.txt").read_text() == "x"


def test_failed_build_leaves_previous_repository(tmp_path, identity):
    build_repository(tmp_path / "repo", {"identity": identity})
    with pytest.raises(InvalidInputError, match="not found"):
        build_repository(tmp_path / "repo", {"identity": identity, "missing": tmp_path / "nope.pt"})
    assert read_repository_info(tmp_path / "repo")["taggers"] == ["identity"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


class _Logits(torch.nn.Module):
    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return p4[:, 0, :2]


def test_rejects_model_without_probabilities(tmp_path):
    scripted = torch.jit.script(_Logits())
    scripted.save(str(tmp_path / "logits.pt"))
    with pytest.raises(ModelMismatchError, match="probabilities"):
        build_repository(tmp_path / "repo", {"logits": tmp_path / "logits.pt"})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"preferred_batch_sizes": (2048,)}, "preferred_batch_sizes"),
        ({"kind": "KIND_TPU"}, "kind"),
        ({"backend": "onnxruntime"}, "backend"),
        ({"instance_count": 0}, "instance_count"),
        ({"max_queue_delay_us": -1}, "max_queue_delay_us"),
    ],
)
def test_invalid_serving_options(options, message):
    with pytest.raises(InvalidInputError, match=message):
        ServingOptions(**options)


@pytest.mark.parametrize("name", ["", "has space", "../escape", "-dash"])
def test_invalid_model_names(tmp_path, identity, name):
    with pytest.raises(InvalidInputError, match="model name"):
        build_repository(tmp_path / "repo", {name: identity})


def test_threads_parameter_only_in_python_backend():
    python = model_config_text("m", 3, ServingOptions(intra_op_threads=2))
    libtorch = model_config_text("m", 3, ServingOptions(intra_op_threads=2, backend="pytorch_libtorch"))
    assert 'key: "intra_op_threads"\n  value: { string_value: "2" }' in python
    assert "intra_op_threads" not in libtorch
    assert "dims: [ 3 ]" in python and "dims: [ 3 ]" in libtorch


@pytest.mark.parametrize("kind", ["KIND_CPU", "KIND_GPU"])
@pytest.mark.parametrize("backend", ["python", "pytorch_libtorch"])
def test_config_carries_the_model_sha256_and_parses_as_triton_config(tmp_path, identity, backend, kind):
    """Every generated config.pbtxt is a valid Triton ModelConfig (text_format.Parse fails on any
    unknown field), with the backend, instance kind, tensors and batching the client relies on."""
    from google.protobuf import text_format
    from tritonclient.grpc.model_config_pb2 import DataType, ModelConfig, ModelInstanceGroup

    from coffea_lorentz.identity import model_identity

    path = build_repository(tmp_path / "repo", {"identity": identity, "second": identity}, backend=backend,
                            kind=kind, intra_op_threads=2, preferred_batch_sizes=(256,), instance_count=2)
    configs = {p.parent.name: text_format.Parse(p.read_text(), ModelConfig()) for p in path.glob("*/config.pbtxt")}
    assert sorted(configs) == ["identity", "second"]
    digest = model_identity(identity, extra={"head": "softmax"})  # the model's identity, not model.pt's bytes
    assert read_repository_info(path)["models"]["identity"]["sha256"] == digest
    for name, config in configs.items():
        assert config.parameters[SHA256_PARAMETER].string_value == digest
        assert config.name == name and config.max_batch_size == 1024
        if backend == "python":
            assert config.backend == "python" and not config.platform
        else:
            assert config.platform == "pytorch_libtorch" and config.default_model_filename == "model.pt"
        (group,) = config.instance_group
        assert group.kind == ModelInstanceGroup.Kind.Value(kind) and group.count == 2
        assert list(config.dynamic_batching.preferred_batch_size) == [256]
        inputs = {tensor.name: (tensor.data_type, list(tensor.dims)) for tensor in config.input}
        assert inputs == {"p4": (DataType.TYPE_FP32, [-1, 4]), "mask": (DataType.TYPE_BOOL, [-1])}
        assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [("score", DataType.TYPE_FP32, [2])]
    assert SHA256_PARAMETER == triton_client.SHA256_PARAMETER  # what clients read back


def test_triton_config_schema_rejects_unknown_fields(tmp_path, identity):
    """The parse above is a real check: a misspelt field in a config.pbtxt fails it."""
    from google.protobuf import text_format
    from tritonclient.grpc.model_config_pb2 import ModelConfig

    path = build_repository(tmp_path / "repo", {"identity": identity})
    text = (path / "identity" / "config.pbtxt").read_text().replace("max_batch_size", "max_batch_sise")
    with pytest.raises(text_format.ParseError, match="max_batch_sise"):
        text_format.Parse(text, ModelConfig())


def test_sha256_parameter_is_checked():
    options = ServingOptions()
    assert SHA256_PARAMETER not in model_config_text("m", 2, options)
    with pytest.raises(InvalidInputError, match="sha256 must be 64 lowercase hex digits"):
        model_config_text("m", 2, options, sha256="not-a-digest")


def test_untrained_tagger_is_deterministic_and_keeps_global_rng():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    name = "pelican"  # ships no weights: parameters come from the fixed seed
    first = pretrained(name)
    assert torch.equal(torch.rand(1), expected_next)
    second = pretrained(name)
    for (key, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), key


def test_pretrained_reads_checkpoint(tmp_path):
    name = "pelican"
    tagger = pretrained(name, seed=1)
    torch.save(tagger.state_dict(), tmp_path / "weights.pt")
    loaded = pretrained(name, seed=2, weights=tmp_path / "weights.pt")
    for (key, a), (_, b) in zip(tagger.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), key
    with pytest.raises(InvalidInputError, match="not found"):
        pretrained(name, weights=tmp_path / "absent.pt")


def test_repository_info_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        read_repository_info(tmp_path)
    (tmp_path / REPOSITORY_INFO).write_text("{")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        read_repository_info(tmp_path)
    (tmp_path / REPOSITORY_INFO).write_text(json.dumps({"taggers": []}))
    assert read_repository_info(tmp_path) == {"taggers": []}


def test_serving_defaults_one_thread_per_instance_instances_from_the_cores():
    import os

    from coffea_lorentz.repository import MAX_DEFAULT_CPU_INSTANCES, default_instance_count

    cores = len(os.sched_getaffinity(0))
    cpu = ServingOptions()
    assert cpu.intra_op_threads == 1
    assert cpu.instance_count == default_instance_count("KIND_CPU") == max(1, min(cores, MAX_DEFAULT_CPU_INSTANCES))
    assert ServingOptions(kind="KIND_GPU").instance_count == 1
    assert ServingOptions(instance_count=3).instance_count == 3
    text = model_config_text("m", 2, cpu)
    assert f"count: {cpu.instance_count}\n" in text and 'key: "intra_op_threads"\n  value: { string_value: "1" }' in text
