"""The command line as a user runs it: reference build (directory and topic), promote, check, run +
SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import yaml

from monitor.config import load_config
from monitor.pipeline.engine import Engine
from monitor.pipeline.features import FEATURE_NAMES
from monitor.reference.store import Reference, ReferenceStore
from monitor.sim.fleet import Camera, encode

from .conftest import camera_frames, send_frames

DRIFTMON = [sys.executable, "-m", "monitor.service.cli"]


def driftmon(*args, check=True):
    res = subprocess.run(
        DRIFTMON + [str(a) for a in args], capture_output=True, text=True, timeout=300
    )
    if check:
        assert res.returncode == 0, res.stderr
    return res


def write_frames(directory, camera, ts):
    directory.mkdir(parents=True)
    for t in ts:
        (directory / f"{t:05d}.jpg").write_bytes(encode(camera.frame(t)))


def test_reference_build_from_dir_and_check(tmp_path):
    cam = Camera("cam-a", "chelsea", width=640, height=360, seed=5, dynamics="iid")
    write_frames(tmp_path / "good", cam, range(0, 200))
    write_frames(tmp_path / "today", cam, range(200, 300))
    cam.set_shift("fog", 3)
    write_frames(tmp_path / "foggy", cam, range(300, 400))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.jpg").write_bytes(b"\xff\xd8\xff garbage")

    built = driftmon(
        "reference", "build", "--from-dir", tmp_path / "good", "--out", tmp_path / "ref.npz", "-q"
    )
    out = json.loads(built.stdout)
    assert out["written"][0]["frames"] == 200
    support = out["written"][0]["support"]  # what it can support, also said on stderr
    assert (
        support["time_source"] == "frame number"
        and support["segments"] == 1
        and support["z_threshold"] > 4
    )
    assert "reference * v1: 200 frames" in built.stderr
    ref = Reference.load(tmp_path / "ref.npz")
    assert ref.n_frames == 200 and ref.source.startswith("dir:")
    assert ref.embeddings.shape[0] == 200 and ref.embedder["architecture"] == "driftmon-randconv-v1"
    assert ref.pca.components_.shape[0] == 32

    res = driftmon(
        "check",
        "--reference",
        tmp_path / "ref.npz",
        "-q",
        tmp_path / "today",
        tmp_path / "foggy",
        tmp_path / "broken",
    )
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["path"] for r in lines] == [str(tmp_path / d) for d in ("today", "foggy", "broken")]
    today, foggy, broken = lines
    assert today["drifted"] is False and foggy["drifted"] is True
    for r in (today, foggy):
        assert {t["name"] for t in r["tests"]} == {
            "shift",
            "emb_shift",
            "view",
            "ks",
            "psi",
            "wasserstein",
            "mmd",
            "ks_dims",
        }
        for t in r["tests"]:
            assert {"name", "statistic", "p_value", "threshold", "drifted"} <= set(t)
    shift = next(t for t in foggy["tests"] if t["name"] == "shift")
    assert (
        shift["drifted"] and shift["statistic"] > shift["threshold"] and shift["drifted_features"]
    )
    ks = next(t for t in foggy["tests"] if t["name"] == "ks")
    assert ks["p_value"] < 0.05 and ks["drifted_features"]
    mmd = next(t for t in foggy["tests"] if t["name"] == "mmd")
    assert mmd["drifted"] is True and mmd["p_value"] <= mmd["threshold"]
    assert broken["drifted"] is None and broken["decode_errors"] == {"corrupt": 1}


def test_reference_build_refuses_too_few_frames(tmp_path):
    cam = Camera("cam-a", "coffee", width=320, height=240, seed=1, dynamics="iid")
    write_frames(tmp_path / "few", cam, range(5))
    res = driftmon(
        "reference",
        "build",
        "--from-dir",
        tmp_path / "few",
        "--out",
        tmp_path / "r.npz",
        check=False,
    )
    assert res.returncode == 2 and "only 5 usable frames" in res.stderr


def test_reference_promote_adds_a_version_the_daemon_accepts_and_refuses_what_it_cannot_promote(
    tmp_path,
):
    cam = Camera("cam-a", "coffee", width=320, height=240, seed=2, dynamics="iid")
    write_frames(tmp_path / "first", cam, range(0, 120))
    write_frames(tmp_path / "labelled", cam, range(120, 240))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "embedding": {"enabled": False},
                "window": {"size": 50, "evaluate_every": 10},
                "tests": {"false_alarm_days": 7},
            }
        )
    )
    driftmon(
        "reference",
        "build",
        "--from-dir",
        tmp_path / "first",
        "--out",
        tmp_path / "store",
        "--stream",
        "cam-a",
        "--config",
        cfg,
        "-q",
    )
    out = json.loads(
        driftmon(
            "reference",
            "promote",
            "--from-dir",
            tmp_path / "labelled",
            "--store",
            tmp_path / "store",
            "--stream",
            "cam-a",
            "--config",
            cfg,
            "-q",
        ).stdout
    )
    assert (out["stream"], out["version"], out["frames"], out["previous_versions"]) == (
        "cam-a",
        2,
        120,
        [1],
    )
    assert out["support"]["frames"] == 120 and out["support"]["ordered"]
    ref = ReferenceStore(tmp_path / "store").for_stream("cam-a")
    assert (
        ref.version == 2
        and ref.extra["promoted"]
        and ref.source == f"dir:{(tmp_path / 'labelled').resolve()}"
    )
    # promoted with the daemon's config: the daemon accepts it at start
    Engine(load_config(cfg), FEATURE_NAMES).check(ref)

    driftmon(
        "reference",
        "build",
        "--from-dir",
        tmp_path / "first",
        "--out",
        tmp_path / "shared.npz",
        "-q",
    )
    res = driftmon(
        "reference",
        "promote",
        "--from-dir",
        tmp_path / "labelled",
        "--store",
        tmp_path / "shared.npz",
        "--stream",
        "cam-a",
        check=False,
    )
    assert res.returncode == 2 and "single shared reference file" in res.stderr
    res = driftmon(
        "reference",
        "promote",
        "--from-topic",
        "frames",
        "--start",
        "0",
        "--store",
        tmp_path / "store",
        "--stream",
        "cam-a",
        check=False,
    )
    assert res.returncode == 2 and "--from-topic needs --start and --end" in res.stderr


def test_reference_build_from_topic_per_stream(broker, topic, tmp_path):
    cams = [
        Camera(f"cam-{i}", "coffee", width=320, height=240, seed=i, dynamics="iid")
        for i in range(2)
    ]
    start = time.time()
    send_frames(broker, topic, [f for c in cams for f in camera_frames(c, range(60))])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"kafka": {"bootstrap_servers": [broker.bootstrap], "fetch_max_wait_ms": 20}}
        )
    )
    out = json.loads(
        driftmon(
            "reference",
            "build",
            "--from-topic",
            topic,
            "--start",
            start - 60,
            "--end",
            time.time() + 60,
            "--per-stream",
            "--out",
            tmp_path / "store",
            "--config",
            cfg,
            "-q",
        ).stdout
    )
    assert sorted((w["stream"], w["frames"]) for w in out["written"]) == [
        ("cam-0", 60),
        ("cam-1", 60),
    ]
    store = ReferenceStore(tmp_path / "store")
    assert store.streams() == ["cam-0", "cam-1"]
    assert store.for_stream("cam-1").source.startswith(f"kafka:{topic}")
    # a time range before the frames were sent selects nothing
    res = driftmon(
        "reference",
        "build",
        "--from-topic",
        topic,
        "--start",
        start - 3600,
        "--end",
        start - 1800,
        "--out",
        tmp_path / "old.npz",
        "--config",
        cfg,
        "-q",
        check=False,
    )
    assert res.returncode == 2 and "only 0 usable frames" in res.stderr


def test_run_serves_and_stops_cleanly_on_sigterm(broker, topic, tmp_path):
    cam = Camera("cam-a", "rocket", width=320, height=240, seed=3, dynamics="iid")
    write_frames(tmp_path / "good", cam, range(60))
    driftmon(
        "reference", "build", "--from-dir", tmp_path / "good", "--out", tmp_path / "ref.npz", "-q"
    )
    port = __import__("monitor.sim.broker", fromlist=["free_port"]).free_port()
    cfg = tmp_path / "driftmon.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "kafka": {
                    "topics": [topic],
                    "group_id": f"run-{topic}",
                    "fetch_max_wait_ms": 20,
                    "session_timeout_ms": 6000,
                    "heartbeat_interval_ms": 1000,
                    "dead_letter_topic": "",
                },
                "reference": {"path": str(tmp_path / "ref.npz")},
                "http": {"port": port},
                "window": {"size": 20, "evaluate_every": 10},
            }
        )
    )
    env = os.environ | {"DRIFTMON_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap}  # the override path
    proc = subprocess.Popen(
        DRIFTMON + ["run", "--config", str(cfg)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        send_frames(broker, topic, camera_frames(cam, range(60, 100)))
        deadline = time.monotonic() + 120
        frames = 0.0
        while time.monotonic() < deadline and frames < 40:
            time.sleep(0.5)
            try:
                status = json.load(
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2)
                )
            except OSError:
                continue
            frames = sum(s["frames"] for s in status["streams"].values())
        assert frames == 40
        assert status["ready"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0]
    assert "stopping" in output


def test_check_refuses_a_reference_from_another_embedder(tmp_path):
    cam = Camera("cam-a", "coffee", width=320, height=240, seed=2, dynamics="iid")
    write_frames(tmp_path / "good", cam, range(60))
    driftmon(
        "reference", "build", "--from-dir", tmp_path / "good", "--out", tmp_path / "ref.npz", "-q"
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "embedding:\n  input_size: 96\n"
    )  # another network input: another embedder identity
    res = driftmon(
        "check",
        "--reference",
        tmp_path / "ref.npz",
        "--config",
        cfg,
        "-q",
        tmp_path / "good",
        check=False,
    )
    assert res.returncode == 2 and "input_size" in res.stderr
    cfg.write_text("embedding:\n  enabled: false\n")  # no embeddings: the reference still serves
    res = driftmon(
        "check", "--reference", tmp_path / "ref.npz", "--config", cfg, "-q", tmp_path / "good"
    )
    assert {t["name"] for t in json.loads(res.stdout)["tests"]} == {
        "shift",
        "view",
        "ks",
        "psi",
        "wasserstein",
    }


def test_run_fails_fast_on_bad_config(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("kafka:\n  bootstrap_servers: [nowhere]\n")
    res = driftmon("run", "--config", cfg, check=False)
    assert res.returncode == 2 and "kafka.bootstrap_servers" in res.stderr
    cfg.write_text("window:\n  size: 50\n")
    res = driftmon("run", "--config", cfg, check=False)
    assert res.returncode == 2 and "reference.path" in res.stderr
