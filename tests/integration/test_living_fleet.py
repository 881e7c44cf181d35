"""Living cameras (a day and night cycle with an infrared night, clouds, traffic, rain) through the
real broker with driftmon's defaults: references built from yesterday's frames on a topic, with
the producers' context labels; today the healthy cameras stay quiet through dusk and night while
the faulted ones are declared."""

import numpy as np

from monitor.reference.collect import build_embedder_from, from_topic, make_reference
from monitor.reference.store import ReferenceStore
from monitor.sim.fleet import encode, make_fleet
from monitor.sim.world import Living

from .conftest import RunningDaemon, daemon_config, send_frames

FPS = 5.0
DAY = 600  # frames: a two-minute day at 5 fps
EPOCH_MS = 1_790_000_000_000
FAULTS = {2: ("defocus_blur", 3), 3: ("lens_covered", 3)}
FAULT_AT = DAY + 50


def records(cam, ts):
    for t in ts:
        yield (
            cam.camera_id.encode(),
            encode(cam.frame(t)),
            [
                ("camera_id", cam.camera_id.encode()),
                ("frame_id", f"{cam.camera_id}-{t}".encode()),
                ("ts", str(EPOCH_MS + int(t * 1000 / FPS)).encode()),
                ("context", cam.context(t).label.encode()),
            ],
        )


def test_healthy_living_cameras_stay_quiet_through_dusk_and_night_and_faults_are_declared(
    broker, topic, tmp_path
):
    fleet = make_fleet(
        4, seed=3, width=320, height=180, fps=FPS, dynamics=Living(day_s=DAY / FPS, start_hour=12)
    )
    yesterday = f"{topic}-yesterday"
    broker.create_topic(yesterday, partitions=1)
    send_frames(broker, yesterday, [r for cam in fleet for r in records(cam, range(DAY))])

    config = daemon_config(
        broker, topic, tmp_path, hysteresis={"k": 0, "m": 0}
    )  # the defaults: derived
    embedder = build_embedder_from(config)
    got = from_topic(config, yesterday, None, None, progress=False, embedder=embedder)
    store = ReferenceStore(tmp_path / "refs")
    for cam in (
        fleet
    ):  # one reference per camera, as `reference build --from-topic --per-stream` makes them
        mask = np.array([s == cam.camera_id for s in got.streams])
        ref = make_reference(
            got,
            mask=mask,
            stream=cam.camera_id,
            source=f"kafka:{yesterday}",
            config=config,
            embedder=embedder,
        )
        assert {"day", "night"} <= set(ref.contexts.tolist()) and ref.time_unit == "s"
        store.add(ref)
    config = daemon_config(broker, topic, store.path, hysteresis={"k": 0, "m": 0})

    today = range(DAY, DAY + 480)  # noon to the next morning: dusk, the infrared night, dawn
    live = [r for cam in fleet for r in records(cam, range(DAY, FAULT_AT))]
    for i, (shift, severity) in FAULTS.items():
        fleet[i].set_shift(shift, severity)
    live += [r for cam in fleet for r in records(cam, range(FAULT_AT, today.stop))]
    evaluations = []
    d = RunningDaemon(config, on_evaluation=lambda e, window: evaluations.append(e))
    try:
        send_frames(broker, topic, live)
        assert d.wait_for(
            lambda: d.value("driftmon_frames_total", outcome="processed") >= len(live), timeout=240
        )
    finally:
        d.stop()
    by_stream = {
        cam.camera_id: [e for e in evaluations if e.stream == cam.camera_id] for cam in fleet
    }
    for i, cam in enumerate(fleet):
        declared = any(e.drifted for e in by_stream[cam.camera_id])
        assert declared is (i in FAULTS), (
            cam.camera_id,
            [(e.context, e.window_drifted) for e in by_stream[cam.camera_id]],
        )
    healthy_nights = [
        e for cam in fleet[:2] for e in by_stream[cam.camera_id] if e.context == "night"
    ]
    # judged against their own nights (a window that also holds dusk frames measures those from
    # the reference's dusk), and never declared
    assert healthy_nights and all(
        "context 'night'" in next(t for t in e.tests if t.name == "shift").p_value_note
        for e in healthy_nights
    )
