"""driftmon's drift tests: a pure library (numpy, scipy; torch optional).

No Kafka, no Prometheus, no configuration files, no environment reads: arrays in, named
frozen results out.
"""

from detectors.base import StatefulDetector
from detectors.result import FeatureTestResult, MultivariateTestResult

__all__ = ["FeatureTestResult", "MultivariateTestResult", "StatefulDetector"]

# --- univariate exports (begin) ---
from detectors.anderson import anderson_test  # noqa: E402
from detectors.calibration import (  # noqa: E402
    CalibrationResult,
    KSCalibration,
    calibrate_ks,
    calibrate_threshold,
)
from detectors.categorical import chi2_test, g_test  # noqa: E402
from detectors.correction import Correction, correct  # noqa: E402
from detectors.cvm import cvm_test  # noqa: E402
from detectors.divergence import hellinger_test, jensen_shannon_test  # noqa: E402
from detectors.hysteresis import Hysteresis, HysteresisResult  # noqa: E402
from detectors.ks import ks_test  # noqa: E402
from detectors.psi import psi_test  # noqa: E402
from detectors.reference import PlacedWindow, UnivariateReference  # noqa: E402
from detectors.sequential import Cusum, PageHinkley, SequentialResult  # noqa: E402
from detectors.wasserstein import wasserstein_test  # noqa: E402

__all__ += [
    "anderson_test",
    "CalibrationResult",
    "calibrate_threshold",
    "KSCalibration",
    "calibrate_ks",
    "chi2_test",
    "g_test",
    "Correction",
    "correct",
    "cvm_test",
    "hellinger_test",
    "jensen_shannon_test",
    "Hysteresis",
    "HysteresisResult",
    "ks_test",
    "psi_test",
    "PlacedWindow",
    "UnivariateReference",
    "Cusum",
    "PageHinkley",
    "SequentialResult",
    "wasserstein_test",
]
# --- univariate exports (end) ---

# --- multivariate exports (begin) ---
from detectors.classifier import ClassifierTestResult, classifier_test  # noqa: E402
from detectors.energy import EnergyReference, energy_test  # noqa: E402
from detectors.ks_dims import KSDimsTestResult, ks_dims_test  # noqa: E402
from detectors.mmd import MMDReference, median_bandwidth, mmd2, mmd_test  # noqa: E402
from detectors.mmd_rff import mmd_rff_test  # noqa: E402
from detectors.reduce import PCA  # noqa: E402

__all__ += [
    "ClassifierTestResult",
    "classifier_test",
    "EnergyReference",
    "energy_test",
    "KSDimsTestResult",
    "ks_dims_test",
    "MMDReference",
    "median_bandwidth",
    "mmd2",
    "mmd_test",
    "mmd_rff_test",
    "PCA",
]
# --- multivariate exports (end) ---
