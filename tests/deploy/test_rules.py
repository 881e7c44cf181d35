"""The alert rules: promtool's checks and unit tests, the generated PrometheusRule, conventions."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import time

import pytest
import yaml
from deploy_assets import (
    OPERATIONS_DOC,
    PROMETHEUS_RULE_FILE,
    REPO,
    RULES_FILE,
    RULES_TEST_FILE,
    iter_rules,
    load_rule_groups,
    operations_anchors,
)

REQUIRED_ALERTS = {
    "DriftmonStreamDrifted",
    "DriftmonCameraStalled",
    "DriftmonFrozenFeed",
    "DriftmonBadRecordRateHigh",
    "DriftmonConsumerLagGrowing",
    "DriftmonDown",
    "DriftmonNotReady",
    "DriftmonRelabelSinkFailing",
    "DriftmonActionsFailing",
}
SEVERITIES = {"critical", "warning", "info"}


def _promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip(
            "promtool is not installed (Debian package `prometheus`, listed in "
            ".ci/apt-packages.txt)"
        )
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=300)


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "gen_prometheusrule", REPO / "deploy" / "gen_prometheusrule.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_promtool_check_rules():
    result = _promtool("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(list(iter_rules()))} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    result = _promtool("test", "rules", str(RULES_TEST_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_not_firing():
    tests = yaml.safe_load(RULES_TEST_FILE.read_text(encoding="utf-8"))["tests"]
    fires, quiet = set(), set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in iter_rules() if "alert" in rule}
    assert alerts - fires == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown not firing"


def test_required_alerts_exist():
    alerts = {rule.get("alert") for rule in iter_rules()}
    assert REQUIRED_ALERTS <= alerts


@pytest.mark.parametrize(
    "rule", [r for r in iter_rules() if "alert" in r], ids=lambda r: r["alert"]
)
def test_alert_conventions(rule):
    name = rule["alert"]
    assert re.fullmatch(r"Driftmon[A-Z][A-Za-z]+", name)
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key, "").strip(), f"{name}: annotations.{key} missing"
    # Per-camera alerts name the camera.
    if re.search(r"\bstream\b", rule["expr"]):
        assert "$labels.stream" in annotations["summary"]
        assert "$labels.stream" in annotations["description"]
    # The runbook link goes to this alert's section of docs/operations.md.
    url = annotations["runbook_url"]
    assert url.endswith(f"docs/operations.md#{name.lower()}"), url
    assert name.lower() in operations_anchors(), (
        f"{OPERATIONS_DOC.relative_to(REPO)} has no '{name}' heading for the runbook link"
    )


def test_prometheusrule_is_generated_from_the_rules_file():
    generator = _load_generator()
    committed = PROMETHEUS_RULE_FILE.read_text(encoding="utf-8")
    assert committed == generator.render(), (
        "deploy/k8s/base/prometheusrule.yaml is stale: run python deploy/gen_prometheusrule.py"
    )
    resource = yaml.safe_load(committed)
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"]["groups"] == load_rule_groups()


def test_generator_check_mode_agrees():
    assert _load_generator().main(["--check"]) == 0


def test_prometheusrule_groups_pass_promtool(tmp_path):
    groups = yaml.safe_load(PROMETHEUS_RULE_FILE.read_text(encoding="utf-8"))["spec"]["groups"]
    plain = tmp_path / "from-prometheusrule.yaml"
    plain.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    result = _promtool("check", "rules", str(plain))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_real_prometheus_loads_and_evaluates_the_rules(prometheus):
    """Prometheus itself (not only promtool) loads the file and evaluates every rule cleanly."""
    expected = {rule.get("alert") or rule.get("record") for rule in iter_rules()}
    deadline = time.monotonic() + 30
    while True:
        answer = prometheus.get("/api/v1/rules")
        assert answer["status"] == "success", answer
        rules = [r for g in answer["data"]["groups"] for r in g["rules"]]
        health = {r["name"]: (r["health"], r.get("lastError", "")) for r in rules}
        if set(health) == expected and all(h == "ok" for h, _ in health.values()):
            break
        errors = {n: e for n, (h, e) in health.items() if h == "err"}
        assert not errors, errors
        if time.monotonic() > deadline:
            pytest.fail(f"rules not all evaluated after 30s: {health}")
        time.sleep(0.5)
