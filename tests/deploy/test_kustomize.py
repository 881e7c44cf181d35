"""The Kubernetes manifests: every overlay rendered by kustomize and validated.

Built-in kinds are validated against the Kubernetes OpenAPI-derived JSON schemas shipped in
`kubernetes-validate` (strict: unknown fields fail). The CRDs (ServiceMonitor, PrometheusRule,
ScaledObject, TriggerAuthentication) have no schema there: they are checked structurally
below, and against the objects they refer to.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from deploy_assets import REPO, load_rule_groups

K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
TARGETS = ["base", *(f"overlays/{o}" for o in OVERLAYS)]
# Oldest and newest Kubernetes versions the manifests are validated against.
KUBERNETES_VERSIONS = ["1.27.0", "1.33.0"]
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}
CONFIG_MOUNT = "/etc/driftmon"


@cache
def _find_kustomize() -> tuple[list[str], str]:
    """(command, why not) for a kustomize of v4 or later: the `labels:` field needs it."""
    candidates = []
    kubectl = shutil.which("kubectl")
    if kubectl:
        candidates.append(([kubectl, "kustomize"], [kubectl, "version", "--client"]))
    kustomize = shutil.which("kustomize")
    if kustomize:
        candidates.append(([kustomize, "build"], [kustomize, "version"]))
    if not candidates:
        return [], "neither kubectl (with its built-in kustomize) nor kustomize is installed"
    reasons = []
    for command, version_command in candidates:
        result = subprocess.run(version_command, capture_output=True, text=True, timeout=60)
        match = re.search(r"(?:Kustomize Version: |^)v?(\d+)\.", result.stdout, re.M)
        if match and int(match.group(1)) >= 4:
            return command, ""
        reasons.append(
            f"{command[0]}: kustomize older than v4 or unknown ({result.stdout.strip()[:120]!r})"
        )
    return [], "; ".join(reasons) + " (Debian's kubernetes-client 1.20 embeds kustomize v2)"


def _kustomize_command() -> list[str]:
    command, why_not = _find_kustomize()
    if not command:
        pytest.skip(why_not)
    return command


@cache
def _render_text(target: str) -> str:
    result = subprocess.run(
        [*_kustomize_command(), str(K8S / target)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(target: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(_render_text(target)) if doc]


def one(objects: list[dict], kind: str) -> dict:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(objects: list[dict]) -> dict:
    (c,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def daemon_config(objects: list[dict]) -> dict:
    config_map = one(objects, "ConfigMap")
    return yaml.safe_load(config_map["data"]["config.yaml"])


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- rendering and schemas -------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_renders(target):
    kinds = {o["kind"] for o in render(target)}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "ServiceMonitor",
        "PrometheusRule",
        "PodDisruptionBudget",
        "ScaledObject",
        "ServiceAccount",
    } <= kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_builtin_objects_match_the_kubernetes_schemas(target, version):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install -r deploy/requirements-ci.txt"
    )
    errors = []
    for obj in render(target):
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = "/".join(str(p) for p in err.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{obj['kind']} {obj['apiVersion']}: no schema for Kubernetes {version}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("target", TARGETS)
def test_only_known_kinds(target):
    """Anything not built in must be one of the CRDs checked structurally here."""
    builtin = {
        "Deployment",
        "Service",
        "ConfigMap",
        "ServiceAccount",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
    }
    for obj in render(target):
        assert obj["kind"] in builtin or (obj["apiVersion"], obj["kind"]) in CRD_KINDS, obj["kind"]


@pytest.mark.parametrize("target", TARGETS)
def test_no_secret_values_in_the_manifests(target):
    for obj in render(target):
        assert obj["kind"] != "Secret", "Secrets are referenced, never committed"
    for env in container(render(target)).get("env", []):
        if "SASL" in env["name"] or "TOKEN" in env["name"] or "PASSWORD" in env["name"]:
            assert "value" not in env, f"{env['name']} must come from a secretKeyRef"
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref["name"] and ref["key"]


# --- the Deployment --------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_deployment_runs_safely(target):
    objects = render(target)
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container(objects)
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), kind


@pytest.mark.parametrize("target", TARGETS)
def test_probes_and_port(target):
    objects = render(target)
    c = container(objects)
    (port,) = c["ports"]
    config = daemon_config(objects)
    assert port == {"name": "http", "containerPort": 9108, "protocol": "TCP"}
    assert config["http"]["port"] == port["containerPort"]
    paths = {
        probe: c[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe in paths:
        assert c[probe]["httpGet"]["port"] == "http"


@pytest.mark.parametrize("target", TARGETS)
def test_volumes(target):
    objects = render(target)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container(objects)["volumeMounts"]}
    assert {m["name"] for m in mounts.values()} <= set(volumes)
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert "/var/lib/driftmon" in mounts
    # The config is the generated (hash-suffixed) ConfigMap, mounted where the CMD reads it.
    config_map = one(objects, "ConfigMap")
    assert (
        volumes[mounts[CONFIG_MOUNT]["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    )
    assert config_map["metadata"]["name"].startswith("driftmon-config-")
    assert container(objects)["args"] == ["run", "--config", f"{CONFIG_MOUNT}/config.yaml"]
    # The reference path in the config is on the reference volume.
    reference = daemon_config(objects)["reference"]["path"]
    mount = max((p for p in mounts if reference.startswith(p)), key=len)
    claim = volumes[mounts[mount]["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim in {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}


def _driftmon_command() -> list[str]:
    """The daemon's own CLI, from this environment."""
    installed = shutil.which("driftmon") or shutil.which(
        "driftmon", path=str(Path(sys.executable).parent)
    )
    if installed:
        return [installed]
    pytest.skip("driftmon is not installed in this environment (pip install -e .)")


@pytest.mark.parametrize("target", TARGETS)
def test_the_daemon_accepts_the_config_and_environment(target, tmp_path):
    """`driftmon config check` on the ConfigMap's config, with the environment the pod gets
    (every secretKeyRef given a dummy value): DRIFTMON_* names must be known config fields."""
    objects = render(target)
    config = daemon_config(objects)
    reference = tmp_path / "reference"  # the PVC mount; the check wants the path to exist
    reference.mkdir()
    config["reference"]["path"] = str(reference)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTMON_")}
    for var in container(objects).get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            env[var["name"]] = f"dummy-{var['valueFrom']['secretKeyRef']['key']}"
    result = subprocess.run(
        [*_driftmon_command(), "config", "check", "--print", str(config_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    effective = json.loads(result.stdout[result.stdout.index("{") : result.stdout.rindex("}") + 1])
    assert effective["http"]["port"] == container(objects)["ports"][0]["containerPort"]
    assert effective["kafka"]["group_id"] == config["kafka"]["group_id"]


@pytest.mark.parametrize("target", TARGETS)
def test_actions_state_and_webhook_token(target):
    """Actions are on, keep their state on the writable state volume (not the read-only
    reference mount, not the read-only root), and the Alertmanager receiver's bearer token comes
    from the driftmon-webhook Secret."""
    objects = render(target)
    actions = daemon_config(objects)["actions"]
    assert actions["enabled"] is True
    mounts = {m["mountPath"]: m for m in container(objects)["volumeMounts"]}
    volumes = {
        v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    for path in (actions["state_dir"], actions["tickets"]["directory"]):
        mount = max((p for p in mounts if path.startswith(p.rstrip("/") + "/")), key=len)
        assert mount == "/var/lib/driftmon" and not mounts[mount].get("readOnly"), path
        assert (
            "emptyDir" in volumes[mounts[mount]["name"]]
            or "persistentVolumeClaim" in volumes[mounts[mount]["name"]]
        )
    env = {e["name"]: e for e in container(objects).get("env", [])}
    ref = env["DRIFTMON_ACTIONS__TICKETS__TOKEN"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("driftmon-webhook", "token")


@pytest.mark.parametrize("target", TARGETS)
def test_config_shape(target):
    config = daemon_config(render(target))
    kafka = config["kafka"]
    assert kafka["bootstrap_servers"] and kafka["topics"] and kafka["group_id"]
    assert kafka["dead_letter_topic"]
    assert kafka["security_protocol"] in {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
    assert config["http"]["host"] == "0.0.0.0"


# --- what refers to what ---------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_selectors_match(target):
    objects = render(target)
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    service = one(objects, "Service")
    assert selects(service["spec"]["selector"], pod_labels)
    assert (
        one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items()
        <= pod_labels.items()
    )
    # ServiceMonitor -> Service, by labels and port name.
    monitor = one(objects, "ServiceMonitor")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports
        assert endpoint["path"] == "/metrics"
    assert (
        one(objects, "ServiceAccount")["metadata"]["name"]
        == deployment["spec"]["template"]["spec"]["serviceAccountName"]
    )


@pytest.mark.parametrize("target", TARGETS)
def test_scaledobject(target):
    objects = render(target)
    scaled = one(objects, "ScaledObject")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["kind"] == "Deployment"
    assert spec["scaleTargetRef"]["name"] == one(objects, "Deployment")["metadata"]["name"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata are strings"
    assert meta["allowIdleConsumers"] == "false", "never more replicas than partitions"
    assert int(meta["lagThreshold"]) > 0
    # The trigger watches the group, topic and brokers that driftmon consumes.
    kafka = daemon_config(objects)["kafka"]
    assert meta["consumerGroup"] == kafka["group_id"]
    assert meta["topic"] in kafka["topics"]
    assert meta["bootstrapServers"].split(",") == kafka["bootstrap_servers"]
    if kafka["security_protocol"].startswith("SASL"):
        assert meta["sasl"] in {"plaintext", "scram_sha256", "scram_sha512"}
        auth = one(objects, "TriggerAuthentication")
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} >= {"username", "password"}
    if kafka["security_protocol"] in {"SSL", "SASL_SSL"}:
        assert meta["tls"] == "enable"


def test_scaledobject_caps_match_partition_counts():
    """maxReplicaCount is the frames topic's partition count in each overlay (comments say so)."""
    caps = {
        o: one(render(f"overlays/{o}"), "ScaledObject")["spec"]["maxReplicaCount"] for o in OVERLAYS
    }
    assert caps == {"dev": 2, "prod": 12, "gpu": 12}


@pytest.mark.parametrize("target", TARGETS)
def test_prometheusrule_carries_the_rules_file(target):
    rule = one(render(target), "PrometheusRule")
    groups = rule["spec"]["groups"]
    expected = load_rule_groups()
    if target == "overlays/dev":
        # The dev overlay shortens DriftmonStreamDrifted's `for:`, by JSON-patch path.
        assert groups[0]["rules"][0]["alert"] == "DriftmonStreamDrifted"
        assert groups[0]["rules"][0]["for"] == "2m"
        groups = [dict(g, rules=[dict(r) for r in g["rules"]]) for g in groups]
        groups[0]["rules"][0]["for"] = expected[0]["rules"][0]["for"]
    assert groups == expected


@pytest.mark.parametrize("target", TARGETS)
def test_everything_is_labelled(target):
    for obj in render(target):
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "driftmon", obj["kind"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_set_namespace_and_image(overlay):
    objects = render(f"overlays/{overlay}")
    namespaces = {o["metadata"].get("namespace") for o in objects}
    assert len(namespaces) == 1 and None not in namespaces
    image = container(objects)["image"]
    assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")


def test_prod_requires_its_secrets():
    for env in container(render("overlays/prod")).get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref.get("optional") is False, env["name"]


def test_gpu_overlay():
    objects = render("overlays/gpu")
    c = container(objects)
    assert int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert c["image"].endswith("-cuda")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    for overlay in ("dev", "prod"):
        limits = container(render(f"overlays/{overlay}"))["resources"]["limits"]
        assert "nvidia.com/gpu" not in limits


def test_kustomize_tool_is_real():
    """Guard against a stand-in: the tool found reports a kustomize version of v4 or later."""
    command = _kustomize_command()
    assert command[-1] in {"kustomize", "build"}
