"""The Grafana dashboards: structure, conventions, and every expression parsed by Prometheus."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from deploy_assets import (
    DASHBOARD_DIR,
    PENDING_METRICS,
    PROMETHEUS_METRICS,
    PROVISIONING_DIR,
    dashboard_files,
    dashboard_promql,
    documented_metrics,
    extract_promql,
    is_row,
    iter_panels,
    load_dashboards,
    metric_names,
    resolve_metric,
    variable_query,
)

__all__ = ["extract_promql"]  # re-exported for the live check against a running daemon

DASHBOARDS = load_dashboards()
DATASOURCE_REF = "${datasource}"
STREAM_QUERY = "label_values(driftmon_stream_frames_total, stream)"
EXPECTED = {"driftmon-fleet.json", "driftmon-camera.json", "driftmon-pipeline.json"}
_RANGE = re.compile(r"\[([^\]]*)\]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_COUNTER_FUNCTIONS = re.compile(r"\b(rate|irate|increase)\s*\(")


def _panels(dashboard):
    return [p for p in iter_panels(dashboard) if not is_row(p)]


def _variables(dashboard):
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def test_the_three_dashboards_exist():
    assert EXPECTED <= set(DASHBOARDS)


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_valid_json_and_dashboard_identity(path):
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and len(dashboard["uid"]) <= 40
    assert dashboard["title"].startswith("driftmon")
    assert "driftmon" in dashboard.get("tags", [])
    assert dashboard.get("id") is None, "exported dashboards carry no numeric id"


def test_dashboard_uids_are_unique():
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panel_ids_are_unique(name):
    ids = [p["id"] for p in iter_panels(DASHBOARDS[name])]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_has_a_unit_a_datasource_and_queries(name):
    for panel in _panels(DASHBOARDS[name]):
        label = f"{name}: panel {panel['id']} {panel.get('title')!r}"
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert isinstance(unit, str) and unit.strip(), f"{label}: no fieldConfig.defaults.unit"
        assert panel.get("datasource", {}).get("uid") == DATASOURCE_REF, label
        assert panel["datasource"].get("type") == "prometheus", label
        assert panel.get("targets"), f"{label}: no queries"
        for target in panel["targets"]:
            assert target.get("datasource", {}).get("uid") == DATASOURCE_REF, label
            assert target.get("expr", "").strip(), f"{label}: target without expr"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), label


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_do_not_overlap(name):
    taken = {}
    for panel in iter_panels(DASHBOARDS[name]):
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_range_is_the_rate_interval(name):
    """rate()/increase() windows are $__rate_interval: at least four scrapes at any zoom."""
    for item in dashboard_promql(name, DASHBOARDS[name]):
        ranges = _RANGE.findall(_STRING.sub('""', item.expr))
        assert all(r == "$__rate_interval" for r in ranges), f"{item.where}: {item.expr}"
        calls = len(_COUNTER_FUNCTIONS.findall(item.expr))
        assert len(ranges) >= calls, f"{item.where}: {item.expr}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_template_variables(name):
    dashboard = DASHBOARDS[name]
    variables = _variables(dashboard)
    datasource = variables.get("datasource")
    assert datasource and datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == DATASOURCE_REF, var["name"]
    text = json.dumps(dashboard)
    if "$stream" in text:
        stream = variables.get("stream")
        assert stream and stream["type"] == "query"
        assert variable_query(stream) == STREAM_QUERY
    # Every $variable used is defined (or is one of Grafana's own).
    used = set(re.findall(r"\$\{?(\w+)", text)) - {"datasource"}
    builtin = {n for n in used if n.startswith("__")}
    assert used - builtin <= set(variables), f"undefined variables in {name}"
    for panel in iter_panels(dashboard):
        if "repeat" in panel:
            assert panel["repeat"] in variables


def test_fleet_and_camera_dashboards_filter_by_stream():
    for name in ("driftmon-fleet.json", "driftmon-camera.json"):
        assert "stream" in _variables(DASHBOARDS[name])


def test_every_metric_used_is_in_the_metrics_contract():
    """Names come from docs/metrics.md's table; PENDING_METRICS lists the few not there yet."""
    documented = documented_metrics()
    assert len(documented) > 20, "could not parse the table in docs/metrics.md"
    unknown = {}
    used = set()
    for item, _ in extract_promql():
        for metric in metric_names(item.expr):
            if metric in PROMETHEUS_METRICS or metric in PENDING_METRICS:
                continue
            base = resolve_metric(metric, documented)
            if base is None:
                unknown.setdefault(metric, []).append(f"{item.source}: {item.where}")
            else:
                used.add(base)
    assert not unknown, f"metrics not in docs/metrics.md: {unknown}"
    # The dashboards and rules between them show most of the contract.
    assert len(used) >= 0.8 * len(documented), sorted(set(documented) - used)


def test_metric_name_extraction():
    expr = (
        "histogram_quantile(0.99, sum by (le, stage) (rate("
        'driftmon_stage_duration_seconds_bucket{instance=~"driftmon_x"}[1m])))'
        ' / on (job) up{job=~".*driftmon.*"}'
    )
    assert metric_names(expr) == {"driftmon_stage_duration_seconds_bucket", "up"}
    assert (
        resolve_metric("driftmon_stage_duration_seconds_bucket", documented_metrics())
        == "driftmon_stage_duration_seconds"
    )


def test_extract_promql_covers_dashboards_and_rules():
    found = extract_promql()
    kinds = {item.kind for item, _ in found}
    assert kinds == {"panel", "variable", "alert", "template"}
    sources = {item.source for item, _ in found}
    assert {f"grafana/dashboards/{n}" for n in EXPECTED} <= sources
    for item, runnable in found:
        assert "$" not in runnable, f"{item.where}: unsubstituted variable in {runnable}"


def test_every_expression_parses_in_a_real_prometheus(prometheus):
    """Each expression (variables filled in) is run by a real Prometheus server: a parse or
    type error comes back as status "error" (errorType bad_data)."""
    failures = []
    for item, runnable in extract_promql():
        answer = prometheus.query(runnable)
        if answer.get("status") != "success":
            failures.append(
                f"{item.source}: {item.where}: {answer.get('errorType')}: "
                f"{answer.get('error')}\n    {runnable}"
            )
    assert not failures, "\n".join(failures)


def test_prometheus_rejects_a_broken_expression(prometheus):
    """The check above can fail: a malformed expression is reported as bad_data."""
    answer = prometheus.query("sum by (stream) (rate(driftmon_stream_frames_total[1m])")
    assert answer["status"] == "error" and answer["errorType"] == "bad_data"


def test_provisioning_files():
    providers = yaml.safe_load(
        (PROVISIONING_DIR / "dashboards" / "driftmon.yaml").read_text(encoding="utf-8")
    )
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    datasources = yaml.safe_load(
        (PROVISIONING_DIR / "datasources" / "prometheus.yaml").read_text(encoding="utf-8")
    )
    assert datasources["apiVersion"] == 1
    (prom,) = datasources["datasources"]
    assert prom["type"] == "prometheus" and prom["url"].startswith("http")
    assert prom["jsonData"]["timeInterval"], "needed for $__rate_interval to cover 4 scrapes"


def test_dashboard_directory_holds_only_dashboards():
    for path in DASHBOARD_DIR.iterdir():
        assert path.suffix == ".json", f"{path.name}: Grafana's file provider reads *.json"
