"""deploy/Dockerfile, read with Docker's own parser (BuildKit's, via the `dockerfile` package).

This checks what the manifests rely on (the entrypoint and default command, the non-root user
id, the torch pin, the port) wherever the tests run; test_image.py builds and runs the image with
podman where it can.
"""

from __future__ import annotations

import pytest
import yaml
from deploy_assets import REPO

DOCKERFILE = REPO / "deploy" / "Dockerfile"


@pytest.fixture(scope="module")
def instructions():
    dockerfile = pytest.importorskip(
        "dockerfile", reason="pip install -r deploy/requirements-ci.txt"
    )
    return dockerfile.parse_file(str(DOCKERFILE))


def _final_stage(instructions):
    starts = [i for i, c in enumerate(instructions) if c.cmd == "FROM"]
    return instructions[starts[-1] :]


def _deployment():
    text = (REPO / "deploy" / "k8s" / "base" / "deployment.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def test_base_image_is_python_311_slim(instructions):
    args = {
        c.value[0].split("=", 1)[0]: c.value[0].split("=", 1)[1]
        for c in instructions
        if c.cmd == "ARG" and "=" in c.value[0]
    }
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert args["TORCH_VERSION"] == "2.13.0"
    assert args["TORCH_INDEX_URL"].endswith("/cpu")


def test_torch_is_installed_before_the_package(instructions):
    runs = [" ".join(c.value) for c in instructions if c.cmd == "RUN"]
    torch = next(i for i, r in enumerate(runs) if "torch==" in r)
    dependencies = next(i for i, r in enumerate(runs) if "pip install -r requirements.txt" in r)
    package = next(i for i, r in enumerate(runs) if "pip install" in r and ".whl" in r)
    assert torch < dependencies < package


def test_entrypoint_and_command_are_exec_form(instructions):
    final = _final_stage(instructions)
    entrypoint = [c for c in final if c.cmd == "ENTRYPOINT"][-1]
    cmd = [c for c in final if c.cmd == "CMD"][-1]
    assert entrypoint.json and list(entrypoint.value) == ["driftmon"]
    assert cmd.json and list(cmd.value) == ["run", "--config", "/etc/driftmon/config.yaml"]
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == list(cmd.value)


def test_runs_as_the_user_kubernetes_expects(instructions):
    final = _final_stage(instructions)
    user = [c for c in final if c.cmd == "USER"][-1].value[0]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric non-root uid, so runAsNonRoot can verify it"
    context = _deployment()["spec"]["template"]["spec"]["securityContext"]
    assert int(uid) == context["runAsUser"]
    assert int(gid) == context["runAsGroup"]


def test_exposes_the_metrics_port(instructions):
    exposed = [c.value[0] for c in _final_stage(instructions) if c.cmd == "EXPOSE"]
    assert exposed == ["9108"]


def test_copies_only_what_the_package_needs(instructions):
    copied = {c.value[0] for c in instructions if c.cmd == "COPY" and not c.flags}
    assert copied <= {"pyproject.toml", "README.md", "detectors/", "monitor/"}
    ignore = (REPO / "deploy" / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    assert "**" in ignore.splitlines()
