"""Energy distance test: agreement with scipy (1-D) and a direct computation (d-D)."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import energy_distance

from detectors import EnergyReference, energy_test
from detectors._gram import random_indicators


def direct_energy(x, y):
    return 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()


@pytest.mark.parametrize("sizes", [(10, 7), (50, 80), (3, 2)])
def test_sqrt_statistic_equals_scipy_energy_distance_in_1d(sizes):
    rng = np.random.default_rng(sum(sizes))
    u, v = rng.normal(size=sizes[0]), rng.standard_t(3, size=sizes[1]) + 0.2
    res = energy_test(u, v, n_permutations=10, seed=0)
    assert np.sqrt(res.statistic) == pytest.approx(energy_distance(u, v), rel=1e-12)
    assert EnergyReference(u).energy(v) == pytest.approx(energy_distance(u, v) ** 2, rel=1e-12)


@pytest.mark.parametrize("d", [2, 5, 16])
def test_statistic_matches_direct_computation_in_d_dims(d):
    rng = np.random.default_rng(d)
    x, y = rng.normal(size=(40, d)), rng.normal(0.2, 1.1, size=(25, d))
    assert energy_test(x, y, n_permutations=10, seed=0).statistic == pytest.approx(
        direct_energy(x, y), rel=1e-9
    )


def test_permuted_statistics_match_direct_relabelling():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(21, 3)), rng.normal(size=(13, 3))
    ref = EnergyReference(x)
    blocks = ref._blocks(y)
    fast = ref._energy(blocks, *blocks.permuted_forms(np.random.default_rng(1), 50))
    ind = random_indicators(np.random.default_rng(1), 34, 13, 50, np.float64)
    pooled = np.concatenate([x, y])
    slow = [direct_energy(pooled[c == 0], pooled[c == 1]) for c in ind.T]
    np.testing.assert_allclose(fast, slow, rtol=1e-9)


def test_result_and_validation():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 2)), rng.normal(4.0, 1.0, size=(30, 2))
    res = energy_test(x, y, n_permutations=99, seed=0)
    assert (res.method, res.n_ref, res.n_cur) == ("energy", 30, 30)
    assert res.p_value == pytest.approx(0.01) and res.drifted
    assert EnergyReference(x).test(y, n_permutations=99, seed=0) == res
    with pytest.raises(ValueError):
        energy_test(x, rng.normal(size=(30, 3)))
    with pytest.raises(ValueError):
        energy_test(x, y, n_permutations=-1)
