"""Shared readers for the deploy assets: dashboards, rules, the metrics contract.

`extract_promql()` is the one place that knows where PromQL lives in this repository (Grafana
targets and variable queries, alert expressions, queries inside alert templates); the parse
check here and the live check against a running daemon both iterate over it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
PROVISIONING_DIR = REPO / "grafana" / "provisioning"
RULES_FILE = REPO / "deploy" / "rules" / "driftmon-rules.yaml"
RULES_TEST_FILE = REPO / "deploy" / "rules" / "driftmon-rules.test.yaml"
PROMETHEUS_RULE_FILE = REPO / "deploy" / "k8s" / "base" / "prometheusrule.yaml"
METRICS_DOC = REPO / "docs" / "metrics.md"
OPERATIONS_DOC = REPO / "docs" / "operations.md"

# Grafana's built-in interval variables, and the values the checks give them.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}

# Values for the dashboards' own template variables when an expression is run outside Grafana.
DEFAULT_VARIABLES = {"stream": "cam-001", "feature": "brightness_mean", "instance": ".+"}

# Metrics used by rules or dashboards ahead of their entry in docs/metrics.md, with the work
# that brings them. Remove an entry once the metric is documented.
PENDING_METRICS: dict[str, str] = {}

# Metrics that Prometheus itself produces.
PROMETHEUS_METRICS = {"up"}

_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),\s*)?(\w+)\s*\)\s*$", re.S)
# `printf "<query with %q verbs>" $labels.a $labels.b ...`: the query and the labels it is fed.
_TEMPLATE_QUERY = re.compile(r'printf\s+"((?:[^"\\]|\\.)*)"((?:\s+\$labels\.\w+)*)')
_METRIC_TOKEN = re.compile(r"(?<![\w:\"'])(driftmon_[a-zA-Z0-9_:]*|up)\b(?!\s*\()")


@dataclass(frozen=True)
class PromQL:
    """One PromQL expression and where it came from."""

    source: str  # file, relative to the repository root
    where: str  # panel / variable / alert it belongs to
    expr: str  # as written (Grafana variables and template verbs unsubstituted)
    kind: str  # "panel", "variable", "alert" or "template"
    # For a template query: the alert labels its %q verbs are given, in order ("stream", ...).
    template_args: tuple[str, ...] = ()

    def substituted(
        self, variables: dict[str, str] | None = None, labels: dict[str, str] | None = None
    ) -> str:
        """The expression with Grafana variables (or template %q verbs) filled in.

        A template's %q verbs get the alert's `labels` (a label the alert lacks is "", as in
        Prometheus' templates); without `labels`, each gets "x" (enough to parse).
        """
        values = {**GRAFANA_BUILTINS, **DEFAULT_VARIABLES, **(variables or {})}

        def fill(match: re.Match) -> str:
            name = match.group(1) or match.group(2)
            if name not in values:
                raise KeyError(f"{self.where}: no value for ${name} in {self.expr!r}")
            return values[name]

        text = _VARIABLE.sub(fill, self.expr)
        if self.kind == "template":
            args = iter(self.template_args)
            text = re.sub(
                "%q",
                lambda _: json.dumps("x" if labels is None else labels.get(next(args, ""), "")),
                text,
            )
        return text


# --- dashboards ------------------------------------------------------------------------------


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARD_DIR.glob("*.json"))


def load_dashboards() -> dict[str, dict]:
    """Dashboard JSON by file name."""
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in dashboard_files()}


def iter_panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def is_row(panel: dict) -> bool:
    return panel.get("type") == "row"


def variable_query(variable: dict) -> str:
    query = variable.get("query")
    if isinstance(query, dict):
        query = query.get("query", "")
    return query or ""


def variable_as_promql(query: str) -> str:
    """A Grafana Prometheus variable query as the PromQL it runs.

    `label_values(expr, label)` lists the label's values over the series of `expr`;
    `label_values(label)` over all series.
    """
    match = _LABEL_VALUES.match(query)
    if not match:
        return query.strip()
    selector, label = match.groups()
    if not selector:
        selector = f'{{{label}!=""}}'
    return f"group by ({label}) ({selector})"


def dashboard_promql(name: str, dashboard: dict) -> list[PromQL]:
    source = f"grafana/dashboards/{name}"
    found = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            found.append(
                PromQL(
                    source,
                    f"variable ${variable['name']}",
                    variable_as_promql(variable_query(variable)),
                    "variable",
                )
            )
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                where = (
                    f"panel {panel.get('id')} {panel.get('title')!r} target {target.get('refId')}"
                )
                found.append(PromQL(source, where, target["expr"], "panel"))
    return found


# --- rules -----------------------------------------------------------------------------------


def load_rule_groups(path: Path = RULES_FILE) -> list[dict]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]


def iter_rules(groups: list[dict] | None = None) -> Iterator[dict]:
    for group in groups if groups is not None else load_rule_groups():
        yield from group["rules"]


def rule_promql() -> list[PromQL]:
    source = str(RULES_FILE.relative_to(REPO))
    found = []
    for rule in iter_rules():
        name = rule.get("alert") or rule.get("record")
        found.append(PromQL(source, f"rule {name}", rule["expr"], "alert"))
        for key, text in sorted(rule.get("annotations", {}).items()):
            for match in _TEMPLATE_QUERY.finditer(text):
                query = match.group(1).encode().decode("unicode_escape")
                args = tuple(re.findall(r"\$labels\.(\w+)", match.group(2)))
                if any(ch in query for ch in "{(") and "driftmon_" in query:
                    assert query.count("%q") == len(args), f"{name}: {query!r} takes {args}"
                    found.append(
                        PromQL(source, f"rule {name} annotation {key}", query, "template", args)
                    )
    return found


def extract_promql(
    variables: dict[str, str] | None = None, labels: dict[str, str] | None = None
) -> list[tuple[PromQL, str]]:
    """Every PromQL expression of the dashboards and rules, with a runnable form.

    Returns (origin, runnable) pairs: `runnable` has `$__rate_interval` and friends, the
    dashboards' variables (`variables` overriding DEFAULT_VARIABLES) and the alert templates'
    `%q` verbs (from an alert's `labels`, else "x") filled in, ready for Prometheus'
    /api/v1/query.
    """
    found = []
    for name, dashboard in load_dashboards().items():
        found.extend(dashboard_promql(name, dashboard))
    found.extend(rule_promql())
    return [(item, item.substituted(variables, labels)) for item in found]


# --- the metrics contract --------------------------------------------------------------------


def documented_metrics() -> dict[str, str]:
    """Metric name -> type, from the table in docs/metrics.md."""
    metrics = {}
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"`[a-zA-Z_:][a-zA-Z0-9_:]*`", cells[0]):
            metrics[cells[0].strip("`")] = cells[1]
    return metrics


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (label names and values, and functions, excluded)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    without_matchers = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_grouping = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_matchers
    )
    return set(_METRIC_TOKEN.findall(without_grouping))


def resolve_metric(name: str, documented: dict[str, str]) -> str | None:
    """The documented metric a series name belongs to (histogram suffixes folded)."""
    if name in documented:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and documented.get(base, "").startswith("histogram"):
            return base
    return None


# --- docs ------------------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def operations_anchors() -> set[str]:
    anchors = set()
    for line in OPERATIONS_DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            anchors.add(github_anchor(match.group(1)))
    return anchors
