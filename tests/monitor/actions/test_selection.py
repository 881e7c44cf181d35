"""Sample selection: scores, budgets, k-center diversity, perceptual-hash near-duplicates, the
ledger."""

import cv2
import numpy as np
import pytest

from monitor.actions.selection import (
    Probe,
    Queued,
    QueueLedger,
    candidate_pool,
    dhash,
    hamming,
    image_hash,
    phash,
    score_window,
    select,
    uncertainty,
    utc_day,
)
from monitor.sim.fleet import Camera, encode

NAMES = ("brightness_mean", "contrast_rms", "sharpness_laplacian_var")


@pytest.fixture(scope="module")
def frames():
    cam = Camera("cam-x", "coffee", width=320, height=240, seed=3, dynamics="iid")
    other = Camera("cam-y", "rocket", width=320, height=240, seed=4, dynamics="iid")
    return cam.frame(0), cam.frame(1), other.frame(0)


@pytest.mark.parametrize("fn", [dhash, phash])
def test_perceptual_hashes_see_near_duplicates_and_tell_scenes_apart(frames, fn):
    a, a_next, other = frames
    recoded = cv2.imdecode(np.frombuffer(encode(a, quality=40), np.uint8), cv2.IMREAD_COLOR)[
        :, :, ::-1
    ]
    brighter = np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)
    assert fn(a) == fn(a.copy())
    assert hamming(fn(a), fn(recoded)) <= 6  # JPEG re-encoding at low quality
    assert hamming(fn(a), fn(brighter)) <= 6  # a global brightness change
    assert (
        hamming(fn(a), fn(a_next)) <= 10
    )  # the next frame of a static camera: jitter and noise only
    assert hamming(fn(a), fn(other)) > 16  # another scene


def test_image_hash_decodes_bytes_and_refuses_garbage(frames):
    a = frames[0]
    assert image_hash(encode(a)) is not None
    assert image_hash(b"not an image") is None
    assert hamming(image_hash(encode(a)), image_hash(encode(a, quality=50))) <= 6


def test_uncertainty_from_probs_and_detections():
    assert uncertainty({"probs": [0.5, 0.5]}) == pytest.approx(1.0)
    assert uncertainty({"probs": [1.0, 0.0, 0.0]}) == pytest.approx(0.0)
    assert 0 < uncertainty({"probs": [0.7, 0.2, 0.1]}) < 1
    assert (
        uncertainty(
            {"detections": [{"label": "car", "score": 0.95}, {"label": "car", "score": 0.5}]}
        )
        == 1.0
    )
    assert uncertainty({"detections": [{"label": "car", "score": 0.9}]}) == pytest.approx(0.2)
    assert uncertainty({"detections": []}) is None
    assert uncertainty(None) is None
    assert uncertainty({"probs": ["x", 1]}) is None


def _window(rng, n_ref=300, n_ok=60, n_shift=40, shift=4.0):
    ref = rng.normal(size=(n_ref, 3))
    ok = rng.normal(size=(n_ok, 3))
    shifted = rng.normal(size=(n_shift, 3)) + [shift, 0, 0]
    return ref, np.vstack([ok, shifted])


def test_scores_rank_shifted_frames_first_and_name_the_extreme_statistic():
    rng = np.random.default_rng(0)
    ref, rows = _window(rng)
    s = score_window(rows, ref, NAMES, focus=["brightness_mean"])
    assert s.space == "statistics"
    top = np.argsort(-s.base)[:30]
    assert (top >= 60).all()  # the 30 best-scored frames are all shifted ones
    assert np.median(s.distance[60:]) > 2 * np.median(s.distance[:60])
    assert np.median(s.distance[:60]) == pytest.approx(
        1.0, abs=0.35
    )  # unshifted frames look like the reference
    assert all(s.extreme_feature[i] == "brightness_mean" for i in range(60, 100))
    assert (s.extreme_z[60:] > 0).mean() > 0.9


def test_scores_use_embeddings_when_both_sides_have_them():
    rng = np.random.default_rng(1)
    ref, rows = _window(rng)
    ref_e = rng.normal(size=(300, 8))
    cur_e = np.vstack([rng.normal(size=(60, 8)), rng.normal(size=(40, 8)) + 3.0])
    s = score_window(rows, ref, NAMES, embeddings=cur_e, ref_embeddings=ref_e)
    assert s.space == "embedding" and s.points.shape == (100, 8)
    s_mismatch = score_window(rows, ref, NAMES, embeddings=cur_e[:, :4], ref_embeddings=ref_e)
    assert s_mismatch.space == "statistics"


def test_candidate_pool_skips_queued_frames_and_is_bounded():
    rng = np.random.default_rng(2)
    ref, rows = _window(rng)
    s = score_window(rows, ref, NAMES)
    best = int(np.argmax(s.base))
    pool, queued = candidate_pool(s, budget=5, pool_factor=3, is_queued=lambda i: i == best)
    assert len(pool) == 15 and best not in pool and queued == 1
    assert s.base[pool[0]] >= s.base[pool[-1]]


def _probes(pool, hashes=None):
    return {i: Probe(hashes[i] if hashes else (i * 0x9E3779B97F4A7C15) & (2**64 - 1)) for i in pool}


def test_select_respects_the_budget_and_never_picks_a_frame_twice():
    rng = np.random.default_rng(3)
    ref, rows = _window(rng)
    s = score_window(rows, ref, NAMES)
    pool, _ = candidate_pool(s, 7, 4, lambda i: False)
    sel = select(s, pool, _probes(pool), 7, hash_distance=0)
    picked = [p.index for p in sel.picks]
    assert len(picked) == 7 and len(set(picked)) == 7
    assert picked[0] == pool[0]  # the best score first
    assert all(p.reasons and p.scores.score == pytest.approx(p.score, abs=1e-5) for p in sel.picks)
    assert select(s, pool, _probes(pool), 0, hash_distance=0).picks == []


def test_k_center_spreads_picks_over_distinct_clusters():
    # two tight clusters of drifted frames, one scoring a little higher: pure top-k would take
    # only the higher one; k-center takes from both
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(300, 3))
    a = rng.normal(scale=0.05, size=(30, 3)) + [6, 0, 0]
    b = rng.normal(scale=0.05, size=(30, 3)) + [0, 5, 0]
    rows = np.vstack([a, b])
    s = score_window(rows, ref, NAMES)
    assert s.base[:30].min() > s.base[30:].max()  # cluster a outscores cluster b
    pool = list(range(60))
    picks = [p.index for p in select(s, pool, _probes(pool), 4, hash_distance=0).picks]
    assert any(i < 30 for i in picks) and any(i >= 30 for i in picks)
    top4 = np.argsort(-s.base)[:4]
    assert all(i < 30 for i in top4)
    assert any(
        r.code == "diverse"
        for p in select(s, pool, _probes(pool), 4, hash_distance=0).picks[1:]
        for r in p.reasons
    )


def test_near_duplicates_and_failed_fetches_are_skipped():
    rng = np.random.default_rng(5)
    ref, rows = _window(rng)
    s = score_window(rows, ref, NAMES)
    pool, _ = candidate_pool(s, 5, 4, lambda i: False)
    base_hash = 0xF0F0F0F0F0F0F0F0
    hashes = {
        i: base_hash ^ (1 << (k % 3)) for k, i in enumerate(pool)
    }  # all within 2 bits of each other
    hashes[pool[-1]] = ~base_hash & (2**64 - 1)  # one truly different frame
    probes = _probes(pool, hashes)
    probes[pool[1]] = Probe(None)  # could not be fetched
    sel = select(s, pool, probes, 5, hash_distance=6)
    assert len(sel.picks) == 2  # one of the near-identical group, and the different frame
    assert {p.index for p in sel.picks} >= {pool[-1]}
    assert sel.skipped["fetch_failed"] == 1
    assert sel.skipped["near_duplicate"] == len(pool) - 3
    # hashes queued earlier for the stream count too
    sel2 = select(s, pool, probes, 5, hash_distance=6, known_hashes=[base_hash])
    assert [p.index for p in sel2.picks] == [pool[-1]]


def test_uncertainty_changes_the_order_of_picks():
    rng = np.random.default_rng(6)
    ref, rows = _window(rng)
    s = score_window(rows, ref, NAMES)
    pool, _ = candidate_pool(s, 3, 4, lambda i: False)
    probes = _probes(pool)
    last = pool[-1]
    probes[last] = Probe(probes[last].hash, uncertainty=1.0)
    first = select(s, pool, probes, 3, hash_distance=0, uncertainty_weight=5.0).picks[0]
    assert first.index == last
    assert any(r.code == "uncertain_prediction" for r in first.reasons)
    assert (
        select(s, pool, probes, 3, hash_distance=0, uncertainty_weight=0.0).picks[0].index
        == pool[0]
    )


def test_ledger_persists_and_keeps_the_daily_budget(tmp_path):
    path = tmp_path / "queued.jsonl"
    ledger = QueueLedger(path, remember=1000)
    day1 = 1_800_000_000.0
    ledger.add([Queued(f"cam/{i}", "cam", "e1", i) for i in range(5)], now=day1)
    assert "cam/3" in ledger and "cam/9" not in ledger
    assert ledger.remaining_today(8, now=day1) == 3
    assert ledger.remaining_today(8, now=day1 + 86_400) == 8  # a new UTC day
    reloaded = QueueLedger(path, remember=1000)
    assert len(reloaded) == 5 and "cam/0" in reloaded
    assert reloaded.queued_on(utc_day(day1)) == 5
    assert reloaded.recent_hashes("cam")[0] == 4 and reloaded.recent_hashes("other") == []
    with path.open("a") as f:
        f.write('{"key": "torn')  # a crash mid-append leaves a torn last line
    after_crash = QueueLedger(path, remember=1000)
    assert len(after_crash) == 5
    after_crash.add(
        [Queued("cam/5", "cam", "e2", 5)], now=day1
    )  # on a line of its own, not glued to the torn one
    after_add = QueueLedger(path, remember=1000)
    assert len(after_add) == 6 and "cam/5" in after_add


def test_ledger_compacts_and_forgets_the_oldest(tmp_path):
    ledger = QueueLedger(tmp_path / "q.jsonl", remember=1000)
    for start in range(0, 2500, 500):
        ledger.add(
            [Queued(f"c/{i}", "c", "e", None) for i in range(start, start + 500)],
            now=1_800_000_000.0,
        )
    assert len(ledger) == 1000
    assert "c/0" not in ledger and "c/2499" in ledger
    lines = (tmp_path / "q.jsonl").read_text().splitlines()
    assert len(lines) <= 2000
    assert len(QueueLedger(tmp_path / "q.jsonl", remember=1000)) == 1000
