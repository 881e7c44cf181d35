"""`driftmon demo`, the README's first command, runs end to end on a small fleet and stops
cleanly."""

from monitor.sim.demo import run_demo


def test_the_demo_builds_references_streams_and_stops_cleanly(capsys, tmp_path):
    assert (
        run_demo(cameras=2, fps=5.0, drift_after=5.0, duration=30.0, port=0, workdir=str(tmp_path))
        == 0
    )
    out = capsys.readouterr().out
    assert "publishing the last 3 days: 2 cameras" in out and "contexts: " in out
    assert "training set: " in out and "within the training set" in out
    assert "daemon running:" in out and ">>> cam-001 now sees: defocus_blur" in out
    assert (
        "cam-000: ok (judged against its" in out
    )  # healthy, judged against its own context's frames
    assert out.rstrip().endswith("driftmon demo stopped cleanly.")
