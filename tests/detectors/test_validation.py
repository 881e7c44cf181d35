"""The library's input checks (detectors/validation.py): what they refuse, and that the error
names the argument."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import (
    Cusum,
    Hysteresis,
    MMDReference,
    PageHinkley,
    UnivariateReference,
    calibrate_threshold,
    classifier_test,
    correct,
    ks_test,
    mmd_rff_test,
    psi_test,
)
from detectors.validation import (
    as_columns,
    as_pair,
    as_vector,
    check_alpha,
    check_int,
    check_number,
    make_rng,
)


def test_numbers_and_integers():
    assert check_alpha(0.05) == 0.05
    for bad in (0.0, 1.0, float("nan"), "x", None):
        with pytest.raises(ValueError, match="^alpha must be"):
            check_alpha(bad)
    assert check_number(1.0, "a", above=0.0, at_most=1.0) == 1.0
    with pytest.raises(ValueError, match=r"h must be finite and > 0, got 0"):
        check_number(0, "h", above=0.0)
    assert check_int(np.int64(3), "k") == 3 and check_int(100.0, "n") == 100
    for bad in (True, 2.5, 0, "3", float("inf"), None):
        with pytest.raises(ValueError, match="^k must be a positive integer"):
            check_int(bad, "k")
    with pytest.raises(ValueError, match=r"n_components must be an integer in \[1, 3\]"):
        check_int(4, "n_components", maximum=3)


def test_arrays():
    assert as_columns([1.0, 2.0], "x").shape == (2, 1)
    for bad, what in (
        (np.zeros((0, 2)), "empty"),
        (np.zeros((3, 0)), "empty"),
        (np.zeros((2, 2, 2)), "1-D or 2-D"),
        ([1.0, np.nan], "NaN"),
    ):
        with pytest.raises(ValueError, match=f"^x_cur .*{what}"):
            as_columns(bad, "x_cur")
    with pytest.raises(ValueError, match="x_ref needs at least 2 samples"):
        as_columns(np.zeros((1, 3)), "x_ref", min_rows=2)
    assert as_columns(np.arange(4), "x", keep_dtype=True).dtype.kind == "i"
    with pytest.raises(ValueError, match="same number of dimensions"):
        as_pair(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="^x must be a vector of 2 values"):
        as_vector([1.0, 2.0, 3.0], "x", 2)
    with pytest.raises(ValueError, match="^seed must be"):
        make_rng(1.5)
    assert make_rng(3, stream=1).random() == np.random.default_rng([3, 1]).random()


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x: ks_test(x, x, alpha=2), "alpha"),
        (lambda x: ks_test(x, x, correction="holm"), "correction"),
        (lambda x: ks_test(x, x, method="fast"), "method"),
        (lambda x: psi_test(x, x, bins=1), "bins"),
        (lambda x: psi_test(x, x, threshold=-1), "threshold"),
        (lambda x: correct([0.5, 1.5]), "p_values"),
        (lambda x: UnivariateReference(x).quantiles([1.5]), "q"),
        (lambda x: UnivariateReference(x).ks(np.zeros((5, 3))), "x_cur"),
        (lambda x: MMDReference(x, bandwidth=0.0), "bandwidth"),
        (lambda x: MMDReference(x).test(x, n_permutations=0), "n_permutations"),
        (lambda x: mmd_rff_test(x, x, n_features=0.5), "n_features"),
        (lambda x: classifier_test(x, x, n_folds=1), "n_folds"),
        (lambda x: classifier_test(x, x, seed="s"), "seed"),
        (lambda x: calibrate_threshold(x, np.max, window=0, stride=1), "window"),
        (lambda x: Hysteresis(k=0), "k"),
        (lambda x: Cusum([0.0], [1.0], h=0.0), "h"),
        (lambda x: PageHinkley(2, mode="sideways"), "mode"),
    ],
)
def test_errors_name_the_argument(call, name):
    x = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match=f"^{name} "):
        call(x)
