"""Fixtures for the deploy tests: a real Prometheus server on loopback, shared by the session."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_assets import RULES_FILE  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrometheusServer:
    """A Prometheus started for the tests, with an empty TSDB and driftmon's rules loaded."""

    def __init__(self, url: str):
        self.url = url

    def get(self, path: str, **params: str) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as err:  # 400/422: the API's JSON error body
            return json.load(err)

    def query(self, expr: str) -> dict:
        return self.get("/api/v1/query", query=expr)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory) -> PrometheusServer:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(
            "the prometheus server is not installed (Debian package `prometheus`, "
            "listed in .ci/apt-packages.txt)"
        )
    workdir = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text(
        f"global:\n  evaluation_interval: 1s\nrule_files:\n  - {RULES_FILE}\nscrape_configs: []\n",
        encoding="utf-8",
    )
    port = _free_port()
    log = (workdir / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = PrometheusServer(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"prometheus exited with {process.returncode}:\n"
                    + (workdir / "prometheus.log").read_text()
                )
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    "prometheus did not become ready in 60s:\n"
                    + (workdir / "prometheus.log").read_text()
                )
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
