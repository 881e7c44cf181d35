"""A window's shift from its reference, in units of how far the reference's own spans wander.

A camera's consecutive frames are not independent draws: the same cars for seconds, the same cloud
for minutes. A window of ``n`` frames is a narrow slice of the camera's normal life, and a
two-sample test that treats its frames as independent rejects almost every healthy window. This
module measures a window against the variability that windows of the same length show *in the
reference itself*, taken as a stream (its frames in time order, cut into contiguous segments).

For each feature ``j`` (an image statistic, an embedding component):

- ``gamma_j(k)``: the reference's autocovariance at lag ``k`` frames, pooled over pairs of frames
  in the same contiguous segment, around the reference mean (so segments at different levels
  count as slow variation, not as noise), corrected for the bias of that centring (it understates
  every lag by about the variance of the reference mean: large for a short reference);
- ``b_j``: the correlation length, the first lag at which the autocorrelation falls below
  ``rho_cut`` (measured, never configured; at most the window length or the longest segment);
- the observed variance of an ``n``-frame window mean, from those autocovariances with Bartlett
  weights ``(1 - k/n)`` up to ``b_j``, and of the reference mean (its segments taken as
  independent);
- ``nu_j = N / b_j``: how many nearly independent stretches the reference holds — its support;
- the null scale ``s_j``: the window-mean variance the reference shows, *shrunk toward the
  conservative bound* that a window moves like a single frame (variance ``gamma_j(0)``), with the
  bound counting as ``prior_spans`` stretches of evidence::

      s_j^2 = var(reference mean)
              + (nu_j * var_obs(n) + prior_spans * gamma_j(0)) / (nu_j + prior_spans)

  A short reference (a few seconds of one camera) has little support: its windows are judged
  almost as single frames. A long one (hours) is judged by what it showed. A reference without
  any order (a bag of images) has no support (``nu_j = 0``): the conservative choice;
- a resolution floor, so a constant feature (the frame width) moved by any amount is a shift.

The statistic is ``z_j = (window mean - reference mean) / s_j``: it keeps its magnitude (unlike KS,
which saturates at 1 as soon as one stretch lies outside the others) and reads as "how many
span-spreads did this statistic move". Under the null a window's ``z_j`` is approximately
standard normal (a Gaussian model of window means; long references make it good, short ones make
``s_j`` conservative), so a window drifts when ``max_j |z_j|`` exceeds the threshold that
:func:`threshold` gives for a per-window false-alarm probability and the number of features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from detectors.result import FeatureTestResult
from detectors.validation import as_columns, check_alpha, check_int, check_number, check_width

#: Below this autocorrelation, frames count as decorrelated (the correlation length's cut).
RHO_CUT = 0.1
#: How many independent stretches of evidence the conservative bound (a window moves like one
#: frame) is worth against what the reference shows.
PRIOR_SPANS = 10.0
#: Resolution floor of a feature's scale, relative to its reference mean's magnitude (plus an
#: absolute 1e-6), so a constant statistic that moves is a shift and not a division by zero.
RELATIVE_FLOOR = 1e-3
#: Rounds of the correction of the autocovariances for centring on the reference's own mean.
BIAS_ITERATIONS = 5


@dataclass(frozen=True)
class SpanNull:
    """How the windows of one reference wander, per feature: fitted once by :func:`fit_span_null`.

    Attributes
    ----------
    mean : ``(k,)`` reference mean.
    scale : ``(k,)`` null standard deviation of ``window mean - reference mean``.
    frame_sd : ``(k,)`` per-frame standard deviation.
    correlation_frames : ``(k,)`` correlation length ``b_j`` in frames.
    support : ``(k,)`` ``nu_j``, nearly independent stretches in the reference (0 for a bag).
    window : the window length ``n`` it holds for.
    n_ref, segments : reference frames and contiguous segments.
    """

    mean: np.ndarray
    scale: np.ndarray
    frame_sd: np.ndarray
    correlation_frames: np.ndarray
    support: np.ndarray
    window: int
    n_ref: int
    segments: int

    def z(self, x_cur) -> np.ndarray:
        """``(window mean - reference mean) / scale`` per feature, for one window ``(n, k)``."""
        cur = as_columns(x_cur, "x_cur")
        check_width(cur, len(self.mean), "x_cur")
        return (cur.mean(axis=0) - self.mean) / self.scale

    @property
    def effective_spans(self) -> float:
        """The reference's support in the median feature: nearly independent stretches it holds."""
        return float(np.median(self.support)) if len(self.support) else 0.0


def _autocovariance(
    x: np.ndarray, segments: Sequence[np.ndarray], mean: np.ndarray, max_lag: int
) -> np.ndarray:
    """``(max_lag + 1, k)``: lag-k products of centred frames, averaged over pairs in one
    segment."""
    out = np.zeros((max_lag + 1, x.shape[1]))
    pairs = np.zeros(max_lag + 1)
    for seg in segments:
        c = x[seg] - mean
        for lag in range(min(max_lag, len(seg) - 1) + 1):
            out[lag] += np.einsum("ij,ij->j", c[: len(seg) - lag], c[lag:])
            pairs[lag] += len(seg) - lag
    return out / np.maximum(pairs, 1)[:, None]


def _mean_variance(gamma: np.ndarray, lags: np.ndarray, n: int) -> np.ndarray:
    """Variance of an n-frame mean from autocovariances, each feature using its first ``lags``."""
    k = np.arange(gamma.shape[0])[:, None]
    use = (k < lags[None, :]) & (k < n)
    weights = np.where(k == 0, 1.0, 2.0 * (1.0 - k / n)) * use
    return np.maximum((weights * gamma).sum(axis=0), 0.0) / n


def fit_span_null(
    x_ref,
    segments: Sequence[np.ndarray] | None,
    window: int,
    *,
    prior_spans: float = PRIOR_SPANS,
    rho_cut: float = RHO_CUT,
    floor=None,
) -> SpanNull:
    floor_arg = floor
    """Fit the null of window shifts on a reference stream (module docstring).

    Parameters
    ----------
    x_ref : array_like, shape (n_ref, k)
        Reference frames in time order.
    segments : sequence of index arrays, or None
        The contiguous runs of ``x_ref`` (e.g. ``monitor.reference.timing.segments``); None for a
        bag of frames without order, judged with the conservative bound alone.
    window : int
        Frames per window the null holds for.
    prior_spans, rho_cut : float
        Weight of the conservative bound, and the autocorrelation below which frames count as
        decorrelated.
    floor : array_like, shape (k,), optional
        Smallest scale per feature, added to the resolution floor: e.g. a share of the feature's
        spread over a whole reference when ``x_ref`` is one context of it, where a feature can be
        constant (colour at night) and a window that mixes in other frames should read as a large
        shift, not an infinite one.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> iid = rng.normal(size=(2000, 1))
    >>> # a level that changes every 100 frames
    >>> slow = np.repeat(rng.normal(size=(20, 1)), 100, axis=0)
    >>> [round(float(fit_span_null(x, [np.arange(2000)], 50).scale[0]), 2) for x in (iid, slow)]
    [0.16, 0.94]
    """
    x = as_columns(x_ref, "x_ref", min_rows=2)
    n = check_int(window, "window")
    prior = check_number(prior_spans, "prior_spans", at_least=0.0)
    cut = check_number(rho_cut, "rho_cut", above=0.0, below=1.0)
    n_ref, k = x.shape
    mean = x.mean(axis=0)
    floor = RELATIVE_FLOOR * np.abs(mean) + 1e-6
    if floor_arg is not None:
        floor = np.hypot(floor, np.asarray(floor_arg, dtype=np.float64))
    if segments is None:  # a bag: no order, no support; the window moves like one frame
        frame_var = x.var(axis=0)
        scale = np.sqrt(frame_var * (1.0 + 1.0 / n_ref) + floor**2)
        return SpanNull(
            mean, scale, np.sqrt(frame_var), np.full(k, float(n)), np.zeros(k), n, n_ref, 0
        )
    segs = [np.asarray(s) for s in segments if len(s)]
    max_lag = max(1, min(n, max(len(s) for s in segs)) - 1)
    centred = _autocovariance(x, segs, mean, max_lag)
    # Products around the reference's own mean understate every autocovariance by about the
    # variance of that mean, badly so for a reference a few correlation lengths long: add it back,
    # re-estimated from the corrected values, until it settles (at most doubling gamma(0)).
    gamma = centred
    for _ in range(BIAS_ITERATIONS):
        rho = gamma / np.where(gamma[0] > 0, gamma[0], 1.0)
        below = rho[1:] < cut
        lags = np.where(
            below.any(axis=0), below.argmax(axis=0) + 1, max_lag + 1
        )  # correlation length b_j
        ref_mean_var = (
            sum(len(s) ** 2 * _mean_variance(gamma, lags, len(s)) for s in segs) / n_ref**2
        )
        gamma = centred + np.minimum(ref_mean_var, centred[0])[None, :]
    window_var = _mean_variance(gamma, lags, n)
    support = n_ref / lags
    shrunk = (support * window_var + prior * gamma[0]) / np.maximum(support + prior, 1e-12)
    scale = np.sqrt(ref_mean_var + shrunk + floor**2)
    return SpanNull(
        mean, scale, np.sqrt(gamma[0]), lags.astype(float), support, n, n_ref, len(segs)
    )


def effective_tests(x_ref) -> float:
    """How many independent tests the features' correlated columns amount to (Li & Ji 2005,
    "Adjusting multiple testing in multilocus analyses using the eigenvalues of a correlation
    matrix", Heredity 95:221): ``sum(I(l >= 1) + (l - floor(l)))`` over the eigenvalues ``l`` of the
    reference's correlation matrix. Constant columns count for nothing: they can only move for real.

    >>> rng = np.random.default_rng(0)
    >>> base = rng.normal(size=(500, 1))
    >>> near_copy = base + 0.01 * rng.normal(size=(500, 1))
    >>> round(effective_tests(np.hstack([base, near_copy, rng.normal(size=(500, 1))])), 1)
    2.0
    """
    x = as_columns(x_ref, "x_ref", min_rows=2)
    varying = x[:, x.std(axis=0) > 1e-12]
    if varying.shape[1] <= 1:
        return float(varying.shape[1])
    eig = np.clip(np.linalg.eigvalsh(np.corrcoef(varying, rowvar=False)), 0.0, None)
    return float(np.sum((eig >= 1.0) + (eig - np.floor(eig))))


def threshold(alpha: float, n_tests: float) -> float:
    """The ``|z|`` a window must exceed in some feature to drift, for a per-window false-alarm
    probability ``alpha`` under the Gaussian null, Bonferroni across ``n_tests`` (effective)
    independent tests (at least one).

    >>> round(threshold(1e-4, 20), 2)
    4.56
    """
    a = check_alpha(alpha)
    m = max(1.0, check_number(n_tests, "n_tests", at_least=0.0))
    return float(norm.isf(a / (2 * m)))


def mixed_z(parts: Sequence[tuple[SpanNull, np.ndarray]]) -> np.ndarray:
    """``z`` per feature of a window whose frames come from several contexts (dusk falling, the
    infrared switching on), each part ``(null of its context, its frames)``: every part is measured
    from its own context's mean, and the parts' shifts add up weighted by their share of the
    window. Their scales add too, as if the parts moved together (they are neighbours in time):
    the conservative bound. A null should hold for windows as long as its part or shorter (a
    shorter window's mean wanders at least as far). One part is ``null.z``.

    >>> rng = np.random.default_rng(0)
    >>> day, night = rng.normal(100, 5, (400, 1)), rng.normal(10, 1, (400, 1))
    >>> nd, nn = (fit_span_null(x, [np.arange(400)], 16) for x in (day, night))  # parts >= 16
    >>> dusk = np.vstack([day[:30], night[:20]])  # 30 frames of day, then 20 of night
    >>> z_day_only = nd.z(dusk)[0]  # the night frames pull the window far from the day's mean
    >>> z_mixed = mixed_z([(nd, day[:30]), (nn, night[:20])])[0]
    >>> round(float(z_day_only), 1), round(float(z_mixed), 1)
    (-24.5, -0.3)
    """
    n = sum(len(x) for _, x in parts)
    shift = sum(
        (len(x) / n) * (as_columns(x, "x_cur").mean(axis=0) - null.mean) for null, x in parts
    )
    scale = sum((len(x) / n) * null.scale for null, x in parts)
    return np.asarray(shift / scale)


def shift_test(
    null: SpanNull, x_cur, *, z_threshold: float, z=None, falls_only: bool = False
) -> FeatureTestResult:
    """Per-feature ``|z|`` against ``z_threshold``; p-values from the Gaussian null (approximate,
    and conservative for a short reference), Bonferroni-adjusted across features. ``z`` when the
    window's shift was measured otherwise (``mixed_z``). ``falls_only``: only a fall is a shift,
    the statistic is ``-z`` (negative for a rise) and its p-value one-sided.

    >>> null = fit_span_null(np.arange(400.0)[:, None] % 7, None, 10)
    >>> [bool(shift_test(null, np.full((10, 1), v), z_threshold=5.0, falls_only=True).drifted[0])
    ...  for v in (-50.0, 3.0, 50.0)]
    [True, False, False]
    """
    signed = null.z(x_cur) if z is None else np.asarray(z)
    z = -signed if falls_only else np.abs(signed)
    t = check_number(z_threshold, "z_threshold", above=0.0)
    p = np.minimum(1.0, (1.0 if falls_only else 2.0) * norm.sf(z))
    return FeatureTestResult(
        method="shift",
        statistic=z,
        p_value=p,
        adjusted_p_value=np.minimum(1.0, p * len(z)),
        threshold=t,
        drifted=z > t,
        n_ref=null.n_ref,
        n_cur=int(np.asarray(x_cur).shape[0]),
        correction="bonferroni",
        p_value_note="Gaussian model of window means on the reference's own spans (approximate)",
    )
