"""A broker that is not up yet when the daemon starts is waited for, not a crash."""

import urllib.error
import urllib.request

from monitor.sim.broker import Broker, free_port
from monitor.sim.fleet import Camera

from .conftest import build_references, camera_frames, daemon_config, send_frames


def code(port, path):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2).status
    except urllib.error.HTTPError as e:
        return e.code


def test_daemon_waits_for_a_broker_that_comes_up_later(tmp_path, run_daemon):
    cam = Camera("cam-late", "coffee", width=320, height=240, seed=4, dynamics="iid")
    port = free_port()
    unreachable = Broker(port=port)  # not started yet
    config = daemon_config(
        unreachable,
        "frames-late",
        tmp_path,
        embedding={"enabled": False},
        window={"size": 20, "evaluate_every": 10},
    )
    refs = build_references(tmp_path, [cam], config, 40)
    d = run_daemon(
        daemon_config(
            unreachable,
            "frames-late",
            refs,
            embedding={"enabled": False},
            window={"size": 20, "evaluate_every": 10},
        )
    )
    # up, alive, not ready, while there is no broker at all
    assert d.wait_for(
        lambda: d.daemon.port is not None and code(d.daemon.port, "/healthz") == 200, timeout=30
    )
    assert code(d.daemon.port, "/readyz") == 503
    with unreachable as broker:
        broker.create_topic("frames-late", partitions=1)
        send_frames(broker, "frames-late", camera_frames(cam, range(40, 70)))
        assert d.wait_for(
            lambda: d.value("driftmon_frames_total", outcome="processed") == 30, timeout=150
        )
        assert d.wait_for(lambda: code(d.daemon.port, "/readyz") == 200, timeout=30)
        d.stop()
