"""A real Label Studio server for the integration tests: ``label-studio start`` in its own
virtualenv (``deploy/label-studio/setup.sh``), on a free loopback port, with a SQLite data dir
copied from the migrated template, a user and a legacy API token created non-interactively."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from monitor.sim.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
LS_VENV = Path(os.environ.get("LS_VENV", ROOT / ".venv-labelstudio"))
LS_BIN = LS_VENV / "bin" / "label-studio"
LS_TOKEN = "driftmon-test-token-0123456789"


class LabelStudio:
    """``label-studio start`` on a free loopback port with a SQLite data dir in tmp; a user and a
    legacy API token created non-interactively (--username/--password/--user-token)."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data = tmp / "ls-data"
        template = LS_VENV / "template-data"  # migrated by setup.sh: starts in seconds, not minutes
        if template.is_dir():
            shutil.copytree(template, data)
        else:
            data.mkdir()
        self.log = open(tmp / "label-studio.log", "wb")
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))
        } | (env or {})
        self.proc = subprocess.Popen(
            [
                str(LS_BIN),
                "start",
                "--no-browser",
                "--internal-host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(data),
                "--username",
                "driftmon@example.com",
                "--password",
                "driftmon-pass",
                "--user-token",
                LS_TOKEN,
                "--enable-legacy-api-token",
                "--log-level",
                "WARNING",
            ],
            cwd=tmp,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def api(self, path, raw=False):
        req = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Token {LS_TOKEN}"}
        )
        with urllib.request.urlopen(req, timeout=30) as res:
            body = res.read()
        return body if raw else json.loads(body)

    def ready(self):
        try:
            self.api("/api/projects")
            return True
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def tasks(self, project_id):
        got = self.api(f"/api/tasks?project={project_id}&page_size=1000&fields=all")
        return got["tasks"]

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            assert self.proc.poll() is None, "label studio exited"
            assert time.monotonic() < deadline, f"label studio did not answer in {timeout_s:.0f} s"
            time.sleep(0.5)

    def call(self, method, path, obj=None):
        """A JSON API call with the test user's token, as a client of Label Studio makes it."""
        req = urllib.request.Request(
            self.url + path,
            data=None if obj is None else json.dumps(obj).encode(),
            method=method,
            headers={"Authorization": f"Token {LS_TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as res:
            body = res.read()
        return json.loads(body) if body else None
