"""The report page's framing (driftmon's block first in the body, the page titled in its head)
and its pictures."""

import cv2
import numpy as np
import pytest

from monitor.actions import figures
from monitor.actions.report import with_summary

EVIDENTLY_LIKE = (
    "<html><head><title>Evidently</title><script>var icon = '<svg><title>logo</title></svg>'"
    "</script></head><body><div id=root></div><script>var t = '<title>x</title>'</script>"
    "</body></html>"
)


def test_the_block_opens_the_body_and_the_head_carries_the_title():
    page = with_summary(EVIDENTLY_LIKE, "<section>block</section>", "Noise up <40x>")
    head, body = page.split("</head>")
    assert head.count("<title>") == 2  # the head's own title and the one inside a script string
    assert "<title>Noise up &lt;40x&gt;</title>" in head and "<title>Evidently</title>" not in head
    assert "<title>logo</title>" in head  # a script's own markup is not touched
    assert body.startswith("<body><section>block</section><div id=root>")
    assert "<title>x</title>" in body


def test_a_page_without_a_head_gets_one():
    page = with_summary("<body>r</body>", "<p>b</p>", "T")
    assert page == "<head><title>T</title></head><body><p>b</p>r</body>"


def _series(times: np.ndarray, means: np.ndarray) -> figures.Series:
    rng = np.random.default_rng(0)
    return figures.Series(
        "edge density", times, means, (0.165, 0.185), rng.normal(0.17, 0.01, 300), means[-50:]
    )


@pytest.mark.parametrize("span_s", [0.0, 4000.0])  # one timestamp for all (a burst), an hour
def test_pictures_are_pngs_that_decode(span_s: float):
    times = 1_790_000_000.0 + np.linspace(0.0, span_s, 200)
    means = np.r_[np.full(150, 0.175), np.full(50, 0.12)]
    for png in (
        figures.timeline([_series(times, means)] * 2, float(times[150])),
        figures.histograms([_series(times, means)]),
    ):
        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[1] > 400 and img.shape[0] > 100
