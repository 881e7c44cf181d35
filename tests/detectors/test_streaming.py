"""Hysteresis and sequential detectors behave as documented."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from detectors import Cusum, Hysteresis, HysteresisResult, PageHinkley, StatefulDetector


def _drive(h, fired):
    return [h.update(f) for f in fired]


def test_hysteresis_k_of_m_entry_and_recovery():
    h = Hysteresis(k=3, m=5, recover=3)
    # 2 fired out of 5 never enters
    out = _drive(h, [True, False, True, False, False, False, True, False])
    assert not any(r.drifted for r in out)
    # the evaluation that makes it 3 of the last 5 enters, and says it changed
    h = Hysteresis(k=3, m=5, recover=3)
    out = _drive(h, [True, False, True, False, True])
    assert [r.drifted for r in out] == [False] * 4 + [True]
    assert out[-1] == HysteresisResult(drifted=True, changed=True)
    # a fired evaluation restarts the clean streak; 3 clean in a row recover
    out = _drive(h, [False, False, True, False, False, False])
    assert [r.drifted for r in out] == [True, True, True, True, True, False]
    assert [r.changed for r in out] == [False] * 5 + [True]
    assert not h.drifted


def test_hysteresis_needs_fresh_firings_after_recovery():
    h = Hysteresis(k=1, m=5, recover=2)
    assert h.update(True).drifted
    assert [r.drifted for r in _drive(h, [False, False])] == [True, False]
    # the earlier firing no longer counts: clean evaluations stay clean
    assert not any(r.drifted for r in _drive(h, [False] * 5))
    assert h.update(True).changed


def test_hysteresis_reset_state_and_pickle():
    h = Hysteresis(k=2, m=4, recover=2)
    _drive(h, [True, True, False])
    state = h.get_state()
    h2 = Hysteresis(k=2, m=4, recover=2)
    h2.set_state(state)
    h3 = pickle.loads(pickle.dumps(h))
    seq = [False, True, False, False]
    assert [r.drifted for r in _drive(h2, seq)] == [r.drifted for r in _drive(h3, seq)]
    h.reset()
    assert h.get_state() == Hysteresis(k=2, m=4, recover=2).get_state()
    with pytest.raises(AttributeError):
        h.drifted = True
    for bad in ({"k": 0}, {"k": 6, "m": 5}, {"recover": 0}, {"m": 2.5}):
        with pytest.raises(ValueError):
            Hysteresis(**bad)


def test_hysteresis_reduces_independent_false_alarms_as_documented():
    # Independent firings with p = 0.05: entries per evaluation ~ C(4, 2) p^3 = 7.5e-4
    rng = np.random.default_rng(0)
    fired = rng.uniform(size=200_000) < 0.05
    h = Hysteresis(k=3, m=5, recover=3)
    entries = sum(h.update(f).changed and h.drifted for f in fired)
    rate = entries / len(fired)
    assert 4e-4 < rate < 1.1e-3, rate


def test_cusum_detects_step_and_is_vectorised():
    rng = np.random.default_rng(11)
    n = 4
    x = rng.normal(size=(300, n))
    x[150:, 1] += 2.0  # step up in feature 1 at index 150
    x[150:, 3] -= 2.0  # step down in feature 3
    c = Cusum(mean=np.zeros(n), std=np.ones(n), k=0.5, h=8.0)
    first = np.full(n, -1)
    for i, row in enumerate(x):
        d = c.update(row).drifted
        first[(first < 0) & d] = i
    assert 150 <= first[1] <= 160 and 150 <= first[3] <= 160
    assert first[0] == -1 and first[2] == -1
    assert c.n_updates == 300


def test_cusum_in_control_run_length_matches_theory():
    # two-sided k=0.5, h=5: ARL0 ~ 465 (Montgomery, table 9.3); 300 independent runs
    rng = np.random.default_rng(1)
    c = Cusum(mean=np.zeros(300), std=np.ones(300), k=0.5, h=5.0)
    first = np.full(300, -1)
    for t in range(3000):
        d = c.update(rng.normal(size=300)).drifted
        first[(first < 0) & d] = t + 1
    first[first < 0] = 3000
    mean, se = first.mean(), first.std() / np.sqrt(300)
    assert abs(mean - 465) < 3 * se + 15, (mean, se)


def test_page_hinkley_detects_both_directions_and_respects_mode():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(400, 2)) * 0.5
    x[200:, 0] += 2.0
    x[200:, 1] -= 2.0
    ph = PageHinkley(n_features=2, delta=0.1, threshold=15.0)
    up = PageHinkley(n_features=2, delta=0.1, threshold=15.0, mode="up")
    hits, hits_up = [], []
    for i, row in enumerate(x):
        if ph.update(row).any_drifted:
            hits.append((i, ph.drifted.tolist()))
        if up.update(row).any_drifted:
            hits_up.append((i, up.drifted.tolist()))
    assert hits and all(i >= 200 for i, _ in hits)
    assert {tuple(d) for _, d in hits} >= {(True, False), (False, True)} or any(
        d == [True, True] for _, d in hits
    )
    assert all(d == [True, False] for _, d in hits_up) and hits_up[0][0] < 215


def test_sequential_reset_equals_fresh_and_rejects_bad_input():
    c = Cusum([0.0], [1.0])
    c.update([3.0])
    c.reset()
    fresh = Cusum([0.0], [1.0])
    assert c.update([1.0]).statistic.tolist() == fresh.update([1.0]).statistic.tolist()
    with pytest.raises(ValueError):
        Cusum([0.0, 1.0], [1.0])
    with pytest.raises(ValueError):
        Cusum([0.0], [-1.0])
    with pytest.raises(ValueError):
        Cusum([0.0], [1.0]).update([1.0, 2.0])
    with pytest.raises(ValueError):
        PageHinkley(1, mode="sideways")
    with pytest.raises(ValueError):
        PageHinkley(1, alpha=0.0)


def _same(a, b) -> bool:
    """Equal instance state, arrays compared by value."""
    va, vb = vars(a), vars(b)
    return va.keys() == vb.keys() and all(
        np.array_equal(va[k], vb[k]) if isinstance(va[k], np.ndarray) else va[k] == vb[k]
        for k in va
    )


@pytest.mark.parametrize(
    "make, feed",
    [
        (lambda: Hysteresis(k=2, m=3, recover=2), [True, True, False, True]),
        (lambda: Cusum([0.0, 1.0], [1.0, 2.0], h=2.0), [[3.0, 1.0], [4.0, -5.0], [0.5, 1.0]]),
        (
            lambda: PageHinkley(2, threshold=1.0, min_instances=1),
            [[0.0, 0.0], [5.0, -5.0], [9.0, 1.0]],
        ),
    ],
)
def test_stateful_detectors_share_one_protocol(make, feed):
    d = make()
    assert isinstance(d, StatefulDetector)
    for x in feed:
        d.update(x)
    assert not _same(d, make())
    d.reset()
    assert _same(d, make())  # all mutable state is created in _reset()
    with pytest.raises(AttributeError):
        d.drifted = True
