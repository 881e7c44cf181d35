"""The container image, built with deploy/build-image.sh and run for real with podman.

The image is built on a Debian bookworm base made here with debootstrap (no container registry
needed), then run as its non-root user with the host's network, against the real Kafka-protocol
broker on loopback: its probes and metrics are read over HTTP while it processes frames, and it
must stop cleanly on SIGTERM. The build time and image size are written to ``image.txt`` in the
test's temporary directory (and printed: ``pytest -s``).

Skipped where podman cannot run here: not root, podman, runc or debootstrap missing (Debian
packages, listed in .ci/apt-packages.txt), or ``podman info`` failing. The debootstrapped base is
kept as a tarball in ``$DRIFTMON_IMAGE_CACHE`` (default ``~/.cache/driftmon``) and podman's own
layer cache makes a rebuild with unchanged dependencies take seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from deploy_assets import REPO

from monitor.sim.broker import Broker, free_port

if str(REPO) not in sys.path:  # the integration tests' helpers, as tests.integration.harness
    sys.path.insert(0, str(REPO))

from tests.integration.harness import (  # noqa: E402
    produce,
    run_config,
    serial_records,
    stats_reference,
)

pytestmark = pytest.mark.container

TAG = "localhost/driftmon:test"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
BUILD_SCRIPT = REPO / "deploy" / "build-image.sh"
BUILD_TIMEOUT_S = 40 * 60
# What podman needs on these hosts (hybrid cgroups): runc, not crun, and no default rlimits, which
# the runtime cannot set there. Written to a file the test owns and named by CONTAINERS_CONF.
CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n'


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def _inspect(what: str, field: str, env: dict[str, str]) -> str:
    """A field of ``podman inspect`` (an image's or a container's), as text."""
    return _run(["podman", "inspect", "--format", "{{" + field + "}}", what], env).stdout.strip()


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory) -> dict[str, str]:
    """The environment podman runs in (CONTAINERS_CONF set), or a skip saying why it cannot."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("building the image needs root (debootstrap, rootful podman)")
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed (Debian packages podman, runc, debootstrap; "
            "listed in .ci/apt-packages.txt)"
        )
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF, encoding="utf-8")
    env = os.environ | {"CONTAINERS_CONF": str(conf)}
    info = _run(["podman", "--runtime", "runc", "info"], env)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run here: {info.stderr.strip()[-500:]}")
    return env


def _torch_source() -> list[str]:
    """build-image.sh options for torch: a local CPU wheel of the Dockerfile's pin where pip's
    configuration here finds one (as `make` installs it; its dependencies from PyPI), else the
    Dockerfile's default, PyTorch's CPU index."""
    version = re.search(r"^ARG TORCH_VERSION=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert version, "deploy/Dockerfile pins torch with ARG TORCH_VERSION"
    config = _run([sys.executable, "-m", "pip", "config", "list"], dict(os.environ)).stdout
    dirs = os.environ.get("PIP_FIND_LINKS", "").split()
    dirs += re.findall(r"find-links='([^']*)'", config)
    for d in dirs:
        if Path(d).is_dir() and any(Path(d).glob(f"torch-{version[1]}+cpu-*.whl")):
            index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
            return ["--wheels", d, "--torch-index", index]
    return []


def _ca_bundle() -> list[str]:
    """pip in the build trusts what pip here trusts (a TLS-inspecting proxy's CA included)."""
    bundle = os.environ.get("PIP_CERT") or ssl.get_default_verify_paths().cafile
    return ["--cert", bundle] if bundle and Path(bundle).is_file() else []


@pytest.fixture(scope="module")
def image(podman_env, tmp_path_factory) -> str:
    cache = Path(os.environ.get("DRIFTMON_IMAGE_CACHE", Path.home() / ".cache" / "driftmon"))
    command = [
        str(BUILD_SCRIPT),
        "--debian-base",
        "--base-tarball",
        str(cache / "debian-bookworm-minbase.tar"),
        "--tag",
        TAG,
        *_torch_source(),
        *_ca_bundle(),
        "--",
        "--runtime",
        "runc",
    ]
    log = tmp_path_factory.mktemp("image") / "build.log"
    started = time.monotonic()
    with log.open("w") as out:
        built = subprocess.run(
            command, env=podman_env, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S
        )
    build_s = time.monotonic() - started
    assert built.returncode == 0, f"{' '.join(command)} failed:\n{log.read_text()[-6000:]}"
    size = int(_inspect(TAG, ".Size", podman_env))
    report = f"{TAG}: {size / 1e6:.0f} MB, built in {build_s:.0f} s (log: {log})\n"
    (log.parent / "image.txt").write_text(report, encoding="utf-8")
    print(report, end="")
    return TAG


def test_image_runs_as_its_non_root_user(image, podman_env):
    assert _inspect(image, ".Config.User", podman_env) == "10001:10001"
    probe = _run(
        [
            "podman",
            "--runtime",
            "runc",
            "run",
            "--rm",
            "--network=none",
            "--entrypoint",
            "python",
            image,
            "-c",
            "import os, torch, monitor; print(os.getuid(), os.getgid(), torch.__version__)",
        ],
        podman_env,
    )
    assert probe.returncode == 0, probe.stderr
    uid, gid, torch_version = probe.stdout.split()
    assert (uid, gid) == ("10001", "10001")
    assert torch_version.endswith("+cpu"), "the CPU build of torch, not PyPI's CUDA one"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _processed(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('driftmon_frames_total{outcome="processed"} '):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_image_processes_frames_from_the_broker(image, podman_env, tmp_path):
    with Broker(log_path=str(tmp_path / "tansu.log")) as broker:
        topic = f"frames-{uuid.uuid4().hex[:8]}"
        broker.create_topic(topic, partitions=3)
        broker.create_topic(f"{topic}.dlq", partitions=1)
        reference = stats_reference(tmp_path)
        for path in [reference, *reference.rglob("*")]:  # the reference volume's fsGroup
            os.chown(path, 10001, 10001)
        port = free_port()
        config = run_config(
            broker.bootstrap, topic, Path("/reference"), f"g-{topic}", http={"port": port}
        )
        (tmp_path / "config.yaml").write_text(json.dumps(config), encoding="utf-8")
        name = f"driftmon-test-{uuid.uuid4().hex[:8]}"
        state = tmp_path / "state"  # the pod's state volume, owned by its fsGroup
        state.mkdir()
        os.chown(state, 10001, 10001)
        # As the Deployment runs it: read-only root, no capabilities, no privilege escalation,
        # config and reference mounted read-only, the state directory and /tmp writable.
        started = _run(
            [
                "podman",
                "--runtime",
                "runc",
                "run",
                "--detach",
                "--name",
                name,
                "--network=host",
                "--read-only",
                "--cap-drop=ALL",
                "--security-opt=no-new-privileges",
                "--tmpfs=/tmp",
                f"--volume={state}:/var/lib/driftmon",
                f"--volume={tmp_path / 'config.yaml'}:/etc/driftmon/config.yaml:ro",
                f"--volume={reference}:/reference:ro",
                image,
            ],
            podman_env,
        )
        assert started.returncode == 0, started.stderr
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            produced = False
            while time.monotonic() < deadline:
                running = _inspect(name, ".State.Running", podman_env)
                assert running == "true", _logs(name, podman_env)
                try:
                    ready = _get(f"{base}/readyz")[0] == 200
                except OSError:  # not listening yet
                    ready = False
                if ready and not produced:
                    produce(broker.bootstrap, topic, serial_records(0, 200, marker_every=0))
                    produced = True
                if produced and _processed(_get(f"{base}/metrics")[1]) >= 100:
                    break
                time.sleep(0.5)
            else:
                pytest.fail(f"no frames processed in 120 s:\n{_logs(name, podman_env)}")
            assert _get(f"{base}/healthz")[0] == 200
            assert _get(f"{base}/readyz")[0] == 200
            status, metrics = _get(f"{base}/metrics")
            assert status == 200 and _processed(metrics) > 0
            uid = _run(["podman", "exec", name, "id", "-u"], podman_env).stdout.strip()
            assert uid == "10001"
            # SIGTERM to PID 1 (the exec-form entrypoint): it finishes and exits 0.
            stopped = _run(["podman", "stop", "--time", "60", name], podman_env, timeout=90)
            assert stopped.returncode == 0, stopped.stderr
            code = _inspect(name, ".State.ExitCode", podman_env)
            assert code == "0", _logs(name, podman_env)
        finally:
            _run(["podman", "rm", "--force", name], podman_env)


def _logs(name: str, env: dict[str, str]) -> str:
    """The container's state and the end of its output, for a failure's message."""
    logs = _run(["podman", "logs", "--tail", "80", name], env)
    state = _run(
        ["podman", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name], env
    )
    return f"container {name}: {state.stdout.strip()}\n{logs.stdout}{logs.stderr}"
