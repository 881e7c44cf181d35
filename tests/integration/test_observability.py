"""The observability stack, live: a real Prometheus scraping a real driftmon fed through the real
broker, with the shipped alert rules, and a real Alertmanager delivering the drift alert to
driftmon's own webhook receiver, which turns it into a refresh ticket.

The scenario (one daemon with the default tests — image statistics and embeddings —, four cameras
with their own references, and a training set made of those references' frames):

1. healthy frames from every camera (cam-000 sending five of them twice, byte for byte: the
   identical-frame series), and a few bad records;
2. cam-000 turns to dusk and cam-001 loses focus (the fleet's shifts), the other two stay healthy,
   and the same bad records again (so the bad-record rate is non-zero between two scrapes);
3. once the alerts, tickets and reports are in, cam-001 recovers (healthy frames again): its drift
   event closes, its alert resolves, Alertmanager sends the resolution, its ticket resolves.

What is asserted:

(a) every PromQL expression of the dashboards, the alert rules and the alert templates
    (`deploy_assets.extract_promql()`) is accepted by Prometheus, and returns a non-empty result
    from the series scraped from the daemon — run while frames still flow, with the dashboards'
    Camera variable (and the templates' alert labels) set to each drifted camera in turn, the one
    still drifted and the one recovered, data for at least one of them. Alert expressions are
    conditions (empty while the alert is quiet): each is also run with its threshold comparisons
    turned into `bool` comparisons, which must return the series the alert watches. NO_DATA lists
    the expressions that cannot have data in this scenario, with why (the lag rule's subquery
    needs minutes; the model's estimated accuracy and labelled figures need model outputs and
    labels); they must still parse, and those whose emptiness does not depend on the test's
    duration must really be empty (so the list cannot go stale). The daemon has a registered
    training set and a labelled baseline, so coverage, freshness and the baseline have data;
(b) Prometheus fires DriftmonStreamDrifted for exactly the drifted cameras, and never fired it for
    a healthy one;
(c) Alertmanager delivers the alerts to `POST /alerts/alertmanager` with the bearer token from its
    `http_config.authorization`, and driftmon opens one refresh ticket per drifted camera (in
    `GET /tickets` and as files in the ticket directory) naming the stream, with the description
    Prometheus rendered from the template queries, linked to the camera's drift event;
(d) the recovery resolves the alert in Prometheus and the ticket in driftmon.

The rules are loaded from deploy/rules/driftmon-rules.yaml with one change, made in a copy:
DriftmonStreamDrifted's `for:` is 0s instead of 10m (see `rules_for_the_test`). Prometheus scrapes
and evaluates every second; Alertmanager groups by camera with 1s/2s waits. Everything listens
on 127.0.0.1 on free ports. Without the Debian binaries (`prometheus`, `prometheus-alertmanager`,
listed in .ci/apt-packages.txt) the module is skipped, saying so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

from monitor.sim.broker import free_port
from monitor.sim.fleet import encode, make_fleet

from .conftest import (
    ActionsDaemon,
    build_references,
    camera_frames,
    daemon_config,
    register_training,
    send_frames,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from deploy_assets import RULES_FILE, extract_promql  # noqa: E402

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        PROMETHEUS is None,
        reason="the prometheus server is not installed (Debian package "
        "`prometheus`, listed in .ci/apt-packages.txt)",
    ),
    pytest.mark.skipif(
        ALERTMANAGER is None,
        reason="Alertmanager is not installed (Debian package "
        "`prometheus-alertmanager`, listed in .ci/apt-packages.txt)",
    ),
]

TOKEN = "am-webhook-token-for-the-live-test"
JOB = "driftmon"
ALERT = "DriftmonStreamDrifted"
REF_FRAMES = 120
HEALTHY = 100  # phase 1, per camera
DRIFTED = 150  # phase 2, per camera
RECOVERY = 200  # phase 3, per camera
DRIFTS = {0: ("dusk", 3), 1: ("defocus_blur", 4)}
RECOVERS = 1  # the drifted camera that recovers in phase 3
REPEATS = 5  # cam-000 frames sent twice in a row in phase 1 (identical-frame series)
WAIT_S = 90.0

DATA_LOOP = (
    "the data loop's model figures need frames with the model's outputs and annotators' labels, "
    "which this scenario has neither of (they are exported, and checked, in test_data_loop.py)"
)
# Expressions that cannot return data in this scenario, by (source, where), with the reason.
NO_DATA = {
    (
        "deploy/rules/driftmon-rules.yaml",
        "rule DriftmonConsumerLagGrowing",
    ): "deriv() over a [15m:1m] subquery needs lag samples at two whole-minute steps, i.e. up to "
    "two minutes of scraping: longer than this test runs (the lag series themselves are checked by "
    "the dashboards' lag panels)",
    (
        "grafana/dashboards/driftmon-camera.json",
        "panel 19 'Estimated accuracy' target A",
    ): DATA_LOOP,
    (
        "grafana/dashboards/driftmon-camera.json",
        "panel 20 'Model error on labelled drifted frames' target A",
    ): DATA_LOOP,
    (
        "grafana/dashboards/driftmon-camera.json",
        "panel 22 'Coverage and estimated accuracy' target B",
    ): DATA_LOOP,
    (
        "grafana/dashboards/driftmon-camera.json",
        "panel 22 'Coverage and estimated accuracy' target C",
    ): DATA_LOOP,
    (
        "grafana/dashboards/driftmon-fleet.json",
        "panel 27 'Labels back' target A",
    ): DATA_LOOP,
    (
        "grafana/dashboards/driftmon-fleet.json",
        "panel 30 'Model error on labelled drifted frames' target A",
    ): DATA_LOOP,
    (
        "grafana/dashboards/driftmon-fleet.json",
        "panel 32 'Estimated accuracy (lowest 10 cameras)' target A",
    ): DATA_LOOP,
    (
        "grafana/dashboards/driftmon-fleet.json",
        "panel 33 'Annotator agreement' target A",
    ): DATA_LOOP,
    (
        "grafana/dashboards/driftmon-fleet.json",
        "panel 33 'Annotator agreement' target B",
    ): DATA_LOOP,
}

# Of those, the ones that would have data if the test ran longer (not checked for staleness).
TIME_DEPENDENT = {("deploy/rules/driftmon-rules.yaml", "rule DriftmonConsumerLagGrowing")}

_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(\s*)(?=-?[0-9.])")


def as_bool(expr: str) -> str:
    """An alert condition with its comparisons against numbers made `bool` comparisons: instead
    of the series that breach the threshold, every series the alert watches (valued 0 or 1)."""
    return _COMPARISON.sub(r"\1 bool\2", expr)


def test_as_bool():
    assert (
        as_bool("time() - max by (stream) (x) > 600") == "time() - max by (stream) (x) > bool 600"
    )
    assert (
        as_bool('up{job=~".*driftmon.*"} == 0 or absent(up{job=~".*driftmon.*"})')
        == 'up{job=~".*driftmon.*"} == bool 0 or absent(up{job=~".*driftmon.*"})'
    )
    assert as_bool("(a / b) > 0.9") == "(a / b) > bool 0.9"
    assert as_bool('x{a!="1"} >= 2') == 'x{a!="1"} >= bool 2'


# --- the real servers ----------------------------------------------------------------------------


def http_json(url: str, data: bytes | None = None, timeout: float = 10.0) -> dict:
    req = urllib.request.Request(url, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return json.load(res)
    except urllib.error.HTTPError as err:  # the APIs' JSON error bodies (400/422)
        return json.load(err)


def wait_for(predicate, timeout: float = WAIT_S, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class Server:
    """A binary started on a free loopback port with its own working directory and log."""

    def __init__(self, name: str, argv: list[str], url: str, workdir: Path):
        self.name, self.url, self.workdir = name, url, workdir
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv, cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready():
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as res:
                    return res.status == 200
            except OSError:
                return False

        if not wait_for(ready, timeout, 0.2):
            pytest.fail(f"{self.name} not ready after {timeout:.0f}s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Prometheus(Server):
    def query(self, expr: str) -> dict:
        return http_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))

    def vector(self, expr: str) -> list[dict]:
        answer = self.query(expr)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def firing(self, alertname: str) -> dict[str, dict]:
        """Firing alerts of that name by stream, from /api/v1/alerts."""
        alerts = http_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]
        return {
            a["labels"].get("stream", ""): a
            for a in alerts
            if a["labels"]["alertname"] == alertname and a["state"] == "firing"
        }


class Alertmanager(Server):
    def alerts(self) -> list[dict]:
        return http_json(f"{self.url}/api/v2/alerts")


def rules_for_the_test(directory: Path) -> Path:
    """The rules file as shipped, but for DriftmonStreamDrifted's `for:` (0s instead of 10m):
    the one change the live test makes."""
    document = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    changed = 0
    for group in document["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == ALERT:
                rule["for"] = "0s"
                changed += 1
    assert changed == 1
    path = directory / "driftmon-rules.live-test.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def prometheus_config(rules: Path, daemon_port: int, am_port: int) -> str:
    return yaml.safe_dump(
        {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(rules)],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
            },
            "scrape_configs": [
                {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{daemon_port}"]}]}
            ],
        },
        sort_keys=False,
    )


def alertmanager_config(daemon_port: int) -> str:
    """Alertmanager 0.25 syntax: drift alerts to driftmon's receiver, with the bearer token in
    http_config.authorization; everything else to a receiver with no integrations."""
    return yaml.safe_dump(
        {
            "route": {
                "receiver": "blackhole",
                "group_by": ["alertname", "namespace", "job", "stream"],
                "group_wait": "1s",
                "group_interval": "2s",
                "repeat_interval": "1h",
                "routes": [{"receiver": "driftmon-tickets", "matchers": [f'alertname="{ALERT}"']}],
            },
            "receivers": [
                {"name": "blackhole"},
                {
                    "name": "driftmon-tickets",
                    "webhook_configs": [
                        {
                            "url": f"http://127.0.0.1:{daemon_port}/alerts/alertmanager",
                            "send_resolved": True,
                            "http_config": {
                                "authorization": {"type": "Bearer", "credentials": TOKEN}
                            },
                        }
                    ],
                },
            ],
        },
        sort_keys=False,
    )


# --- driftmon ------------------------------------------------------------------------------------


def bad_records():
    jpeg = encode(np.full((64, 64, 3), 128, np.uint8))
    return [
        (b"cam-bad", jpeg[: len(jpeg) // 2], [("camera_id", b"cam-bad")]),  # corrupt
        (b"cam-bad", b"", []),  # empty
        (b"cam-bad", b"this is not an image", []),  # unsupported_format
    ]


# --- the scenario --------------------------------------------------------------------------------


class Scenario:
    """Runs the three phases once for the module, recording what the tests assert on."""

    def __init__(self, broker, topic: str, tmp: Path):
        self.broker, self.topic, self.tmp = broker, topic, tmp
        self.fleet = make_fleet(4, seed=11, width=480, height=270, dynamics="iid")
        self.drifted = {self.fleet[i].camera_id for i in DRIFTS}
        self.healthy = {c.camera_id for c in self.fleet} - self.drifted
        self.recovered = self.fleet[RECOVERS].camera_id
        self.tickets_dir = tmp / "tickets"
        self.servers: list[Server] = []
        self.daemon: ActionsDaemon | None = None
        self.sent = 0  # records sent
        self.t = REF_FRAMES  # next frame number per camera

    # the stack

    def start(self) -> None:
        refs = build_references(
            self.tmp, self.fleet, daemon_config(self.broker, self.topic, self.tmp), REF_FRAMES
        )
        # the model's training set: the four cameras' reference frames (coverage, freshness)
        training = register_training(self.tmp, refs)
        baseline = self.tmp / "baseline.jsonl"
        box = [10, 10, 60, 60]
        baseline.write_text(
            "".join(
                json.dumps(
                    {
                        "predictions": {
                            "detections": [{"label": "object", "score": 0.9, "box": box}]
                        },
                        "boxes": [{"label": "object", "box": box}] * (2 if i == 0 else 1),
                    }
                )
                + "\n"
                for i in range(10)
            )
        )  # one labelled box of eleven missed: the baseline's object error is 1/11
        config = daemon_config(
            self.broker,
            self.topic,
            refs,
            training={"path": str(training)},
            actions={
                "enabled": True,
                "state_dir": str(self.tmp / "state"),
                "queue_size": 16,
                "selection": {"max_per_event": 5, "max_per_day": 100, "pool_factor": 3},
                "report": {"contact_sheet_frames": 4, "reference_frames": 2, "thumbnail_px": 64},
                "retry": {"attempts": 20, "backoff_s": 0.2, "max_backoff_s": 1.0},
                "relabel": {"sinks": ["directory"], "directory": str(self.tmp / "export")},
                "tickets": {
                    "token": TOKEN,
                    "sinks": ["directory"],
                    "directory": str(self.tickets_dir),
                },
                "feedback": {"baseline": str(baseline)},
            },
        )
        self.daemon = ActionsDaemon(config, drain_s=10)

        am_dir = self.tmp / "alertmanager"
        am_dir.mkdir()
        am_config = am_dir / "alertmanager.yml"
        am_config.write_text(alertmanager_config(self.daemon.port), encoding="utf-8")
        if AMTOOL:  # Alertmanager's own checker, when installed beside it
            checked = subprocess.run(
                [AMTOOL, "check-config", str(am_config)], capture_output=True, text=True, timeout=60
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
        am_port = free_port()
        self.alertmanager = Alertmanager(
            "alertmanager",
            [
                ALERTMANAGER,
                f"--config.file={am_config}",
                f"--storage.path={am_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            f"http://127.0.0.1:{am_port}",
            am_dir,
        )
        self.servers.append(self.alertmanager)

        prom_dir = self.tmp / "prometheus"
        prom_dir.mkdir()
        self.rules = rules_for_the_test(prom_dir)
        prom_config = prom_dir / "prometheus.yml"
        prom_config.write_text(
            prometheus_config(self.rules, self.daemon.port, am_port), encoding="utf-8"
        )
        prom_port = free_port()
        self.prometheus = Prometheus(
            "prometheus",
            [
                PROMETHEUS,
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={prom_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            f"http://127.0.0.1:{prom_port}",
            prom_dir,
        )
        self.servers.append(self.prometheus)
        self.alertmanager.wait_ready()
        self.prometheus.wait_ready()
        self.require(
            lambda: self.prometheus.vector(f'up{{job="{JOB}"}} == 1'),
            "Prometheus is not scraping driftmon",
        )

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.daemon is not None and self.daemon.thread.is_alive():
            self.daemon.stop()

    # helpers

    def require(self, predicate, what: str, timeout: float = WAIT_S) -> None:
        if not wait_for(predicate, timeout):
            logs = "\n".join(f"--- {s.name}:\n{s.log()}" for s in self.servers)
            pytest.fail(f"{what} (waited {timeout:.0f}s)\n{logs}")

    def send(self, frames_per_camera: int, bad: bool, repeats: int = 0) -> None:
        """Frames from every camera; `bad`: the bad records amid them; `repeats`: that many of
        cam-000's frames sent twice in a row (new frame id, same bytes), as a camera's encoder
        does now and then."""
        items = []
        for cam in self.fleet:
            frames = list(camera_frames(cam, range(self.t, self.t + frames_per_camera)))
            if cam is self.fleet[0]:
                for i in range(repeats, 0, -1):
                    key, value, headers = frames[10 * i]
                    again = [(k, v + b"-again" if k == "frame_id" else v) for k, v in headers]
                    frames.insert(10 * i + 1, (key, value, again))
            items += frames
        if bad:
            items = items[: len(items) // 2] + bad_records() + items[len(items) // 2 :]
        self.t += frames_per_camera
        send_frames(self.broker, self.topic, items)
        self.sent += len(items)

    def handled(self) -> float:
        d = self.daemon
        return d.value("driftmon_frames_total", outcome="processed") + d.value(
            "driftmon_frames_total", outcome="dead_lettered"
        )

    def scraped(self, expr: str, value: float) -> bool:
        got = self.prometheus.vector(expr)
        return bool(got) and float(got[0]["value"][1]) == value

    # the phases

    def run(self) -> None:
        d, prom = self.daemon, self.prometheus
        # 1: healthy frames and a few bad records, scraped before anything else happens
        self.send(HEALTHY, bad=True, repeats=REPEATS)
        self.require(lambda: self.handled() >= self.sent, "phase 1: not every record handled")
        self.require(
            lambda: self.scraped("sum(driftmon_bad_records_total)", 3), "phase 1 not scraped"
        )
        self.identical = d.value(
            "driftmon_stream_identical_frames_total", stream=self.fleet[0].camera_id
        )

        # 2: two cameras drift; the same bad records again
        for i, (shift, severity) in DRIFTS.items():
            self.fleet[i].set_shift(shift, severity)
        self.send(DRIFTED, bad=True)
        self.require(lambda: self.handled() >= self.sent, "phase 2: not every record handled")
        self.drifted_flags = {
            c.camera_id: d.value("driftmon_stream_drifted", stream=c.camera_id) for c in self.fleet
        }
        # (b) Prometheus fires the drift alert for the drifted cameras ...
        wait_for(lambda: set(prom.firing(ALERT)) >= self.drifted)
        self.firing_after_drift = prom.firing(ALERT)
        # (c) ... Alertmanager delivers them, driftmon opens tickets
        wait_for(lambda: {t["stream"] for t in d.get_json("/tickets")["tickets"]} >= self.drifted)
        self.am_alerts = {
            a["labels"].get("stream"): a
            for a in self.alertmanager.alerts()
            if a["labels"]["alertname"] == ALERT
        }
        self.tickets = {
            t["stream"]: d.get_json(f"/tickets/{t['id']}")
            for t in d.get_json("/tickets")["tickets"]
        }
        self.events = {e["stream"]: e for e in d.get_json("/events")["events"]}
        # the evidence (reports) and relabel deliveries of the drift events
        wait_for(
            lambda: (
                d.value("driftmon_drift_reports_total", result="ok") >= len(self.drifted)
                and d.actions.idle()
            )
        )

        # 3: one drifted camera recovers; frames keep flowing for all
        self.fleet[RECOVERS].set_shift(None)
        self.send(RECOVERY, bad=False)
        self.require(lambda: self.handled() >= self.sent, "phase 3: not every record handled")
        # (three scrapes of the closed event, so that rate() and increase() see two samples or more)
        closed = f'driftmon_drift_events_closed_total{{stream="{self.recovered}"}}'
        self.require(
            lambda: prom.vector(f"count_over_time({closed}[1m]) >= 3"),
            f"{self.recovered}'s recovery (a closed drift event) was not scraped",
        )
        # (a) every expression, right away: the rates cover frames still being processed
        self.expressions = self.run_expressions()
        # (d) the alert resolves in Prometheus, Alertmanager tells driftmon, the ticket resolves
        wait_for(lambda: set(prom.firing(ALERT)) == self.drifted - {self.recovered})
        self.firing_after_recovery = prom.firing(ALERT)
        ticket = self.tickets.get(self.recovered)
        if ticket is not None:
            wait_for(lambda: d.get_json(f"/tickets/{ticket['id']}").get("status") == "resolved")
            self.resolved_ticket = d.get_json(f"/tickets/{ticket['id']}")
        else:
            self.resolved_ticket = None
        self.ever_fired = {
            r["metric"].get("stream")
            for r in prom.vector(f'max_over_time(ALERTS{{alertname="{ALERT}"}}[1h])')
        }
        self.final_values = {
            "tickets_created": d.value("driftmon_tickets_total", action="created"),
            "tickets_resolved": d.value("driftmon_tickets_total", action="resolved"),
            "webhooks_accepted": d.value("driftmon_alert_webhooks_total", result="accepted"),
            "webhooks_refused": sum(
                d.value("driftmon_alert_webhooks_total", result=r)
                for r in ("unauthorized", "bad_request", "unconfigured")
            ),
        }

    def run_expressions(self) -> list[dict]:
        """Every expression, once per drifted camera: the dashboards' Camera variable (and the
        alert templates' labels) set to the camera still drifted, then to the one that recovered."""
        results = []
        for camera in sorted(self.drifted):
            variables = {"stream": camera, "feature": "brightness_mean", "instance": ".+"}
            labels = {"namespace": "", "job": JOB, "stream": camera}
            for item, runnable in extract_promql(variables, labels):
                forms = [("as written", runnable)]
                if item.kind == "alert":
                    forms.append(("bool form", as_bool(runnable)))
                for form, expr in forms:
                    answer = self.prometheus.query(expr)
                    results.append(
                        {
                            "camera": camera,
                            "source": item.source,
                            "where": item.where,
                            "kind": item.kind,
                            "form": form,
                            "expr": expr,
                            "status": answer.get("status"),
                            "error": answer.get("error"),
                            "result": (answer.get("data") or {}).get("result"),
                        }
                    )
        return results


@pytest.fixture(scope="module")
def live(broker, tmp_path_factory):
    topic = f"obs-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, partitions=3)
    broker.create_topic(f"{topic}.dlq", partitions=1)
    scenario = Scenario(broker, topic, tmp_path_factory.mktemp("observability"))
    try:
        scenario.start()
        scenario.run()
        yield scenario
    finally:
        scenario.stop()


# --- the assertions ------------------------------------------------------------------------------


def test_every_expression_parses_and_returns_scraped_data(live):
    rejected = [
        f"{r['source']}: {r['where']} ({r['form']}): {r['error']}\n    {r['expr']}"
        for r in live.expressions
        if r["status"] != "success"
    ]
    assert not rejected, "Prometheus rejected:\n" + "\n".join(rejected)

    # An expression has data when it returns samples for at least one of the two cameras (a
    # "drifted since" panel has none for the recovered one, a "closed events" one none for the
    # other). A quiet alert's condition is empty by design: its bool form is what is checked.
    has_data: dict[tuple[str, str, str], bool] = {}
    for r in live.expressions:
        if r["kind"] == "alert" and r["form"] == "as written":
            continue
        key = (r["source"], r["where"], r["form"])
        has_data[key] = has_data.get(key, False) or bool(r["result"])
    empty = [
        f"{s}: {w} ({f})"
        for (s, w, f), data in sorted(has_data.items())
        if not data and (s, w) not in NO_DATA
    ]
    assert not empty, "no data from the live daemon for:\n" + "\n".join(empty)
    stale = [
        f"{s}: {w} returns data: remove it from NO_DATA"
        for (s, w, f), data in has_data.items()
        if data and (s, w) in NO_DATA and (s, w) not in TIME_DEPENDENT
    ]
    assert not stale, "\n".join(stale)
    assert set(NO_DATA) <= {(s, w) for s, w, _ in has_data}, (
        "NO_DATA names an expression that is gone"
    )
    assert len(has_data) >= 60  # dashboards + rules + templates, all of them
    # the identical-frame panels and DriftmonFrozenFeed have their series from cam-000's repeats
    assert live.identical == REPEATS


def test_drift_alert_condition_selects_exactly_the_drifted_cameras(live):
    """The rule's own condition, evaluated by Prometheus on the scraped series."""
    rule = [
        r for r in live.expressions if r["where"] == f"rule {ALERT}" and r["form"] == "as written"
    ]
    now_drifted = live.drifted - {live.recovered}
    assert rule and all({s["metric"]["stream"] for s in r["result"]} == now_drifted for r in rule)
    watched = [
        r for r in live.expressions if r["where"] == f"rule {ALERT}" and r["form"] == "bool form"
    ]
    assert watched and all(
        {s["metric"]["stream"] for s in r["result"]} == {c.camera_id for c in live.fleet}
        for r in watched
    )


def test_prometheus_fires_the_drift_alert_for_exactly_the_drifted_cameras(live):
    # the daemon's own evaluations first: the drifted cameras drifted, the healthy ones did not
    assert {s for s, v in live.drifted_flags.items() if v == 1} == live.drifted
    assert all(live.drifted_flags[s] == 0 for s in live.healthy)
    assert set(live.firing_after_drift) == live.drifted
    for stream, alert in live.firing_after_drift.items():
        assert alert["labels"]["job"] == JOB and alert["labels"]["severity"] == "warning"
        assert stream in alert["annotations"]["summary"]
    assert live.ever_fired == live.drifted, "a healthy camera's alert went pending or firing"


def test_alertmanager_delivers_to_driftmon_and_tickets_name_the_drifted_cameras(live):
    assert set(live.am_alerts) >= live.drifted
    assert set(live.tickets) == live.drifted
    files = {p.name for p in live.tickets_dir.glob("drift-*.json")}
    for stream in live.drifted:
        ticket = live.tickets[stream]
        am_alert = live.am_alerts[stream]
        # the ticket is keyed by Alertmanager's fingerprint of this camera's alert
        assert (
            ticket["id"] == f"drift-{am_alert['fingerprint']}" and f"{ticket['id']}.json" in files
        )
        assert ticket["stream"] == stream and stream in ticket["title"]
        assert (
            ticket["alert"]["alertname"] == ALERT and ticket["alert"]["labels"]["stream"] == stream
        )
        assert ticket["receiver"] == "driftmon-tickets"
        # the description as Prometheus rendered it from the rule's template queries
        description = ticket["alert"]["annotations"]["description"]
        fired = re.search(
            r"Tests that fired on its last evaluation:\s*(.*?)\s*\(smallest adjusted "
            r"p-value\s*(\S+?)\)",
            description,
            re.S,
        )
        assert fired, description
        assert "ks" in [t.strip() for t in fired.group(1).split(",")], description
        assert fired.group(2) != "n/a" and float(fired.group(2)) < 0.05, description
        # linked to the camera's drift event, whose report was written
        assert [e["id"] for e in ticket["events"]] == [live.events[stream]["id"]]
        on_disk = json.loads((live.tickets_dir / f"{ticket['id']}.json").read_text())
        assert on_disk["stream"] == stream
    assert set(live.events) == live.drifted
    # every delivery carried the bearer token from Alertmanager's http_config.authorization
    assert live.final_values["webhooks_accepted"] >= len(live.drifted)
    assert live.final_values["webhooks_refused"] == 0


def test_recovery_resolves_the_alert_and_the_ticket(live):
    assert set(live.firing_after_recovery) == live.drifted - {live.recovered}
    assert live.resolved_ticket is not None, "no ticket for the camera that recovered"
    assert live.resolved_ticket["status"] == "resolved" and live.resolved_ticket["resolved_at"]
    assert live.resolved_ticket["stream"] == live.recovered
    still = live.drifted - {live.recovered}
    for stream in still:
        assert live.daemon.get_json(f"/tickets/{live.tickets[stream]['id']}")["status"] == "firing"
    assert live.final_values["tickets_created"] == len(live.drifted)
    assert live.final_values["tickets_resolved"] == 1
    assert (
        live.final_values["webhooks_accepted"] >= len(live.drifted) + 1
    )  # the firing ones, the resolution
