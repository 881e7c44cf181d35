"""Rate: which frames of a stream are analysed, at most ``max_fps`` a second, decided before decode.

Cameras publish 5-30 frames a second; a drift decision needs about one. A frame above the rate is
still counted (its stream's frame count, frozen-feed check and newest time) but never decoded, so
it costs only its fetch from Kafka.

The rule is deterministic, from each frame's event time (so a backlog read in a minute is sampled
as its hour was lived, and the same frames give the same choice wherever they are read), and keeps
the analysed frames evenly spaced. A stream's analysed frames follow a grid of ``1 / max_fps``
seconds that starts at its first frame. The frame analysed for a grid point is the one nearest
it, judged without waiting for the frame after: a frame is analysed once its time reaches the
point less half the gap from the frame before it (the frame after is expected one such gap later,
farther from the point). So a camera at 5, 10, 15, 25 or 30 frames/s is analysed at exactly 1
frame/s on frames a second apart, however their times jitter (by up to a sixth of its frame
interval; more moves an analysed frame by one camera frame now and then); a camera at or below
the rate has every frame analysed; one between the rate and twice it has the frames nearest the
grid analysed, ``max_fps`` a second on average.

- A stream that falls behind the grid by half an interval or more (it paused, or sends slowly)
  starts its grid again at the frame analysed then: no burst of catching up after a gap.
- A frame more than an interval older than the stream's last analysed frame means its clock went
  back (reset, or a camera re-sending old frames): the grid starts again there, rather than
  skipping the stream until its clock passes the old grid.

Examples
--------
A 5 frames/s camera whose times jitter by up to 30 ms, limited to 1 frame/s: every fifth frame.

>>> rate = RateLimit(1.0)
>>> jitter = [0.0, 0.03, -0.03, 0.01, 0.03, -0.02, 0.0, 0.02, -0.03, 0.01, 0.0, -0.01]
>>> times = [100.0 + i / 5 + j for i, j in enumerate(jitter)]
>>> [i for i, t in enumerate(times) if rate.admit("cam-1", t)]
[0, 5, 10]

Streams are independent, and 0 analyses every frame.

>>> [rate.admit("cam-2", t) for t in (100.0, 100.2)], RateLimit(0).admit("cam-1", 100.1)
([True, False], True)
"""

from __future__ import annotations


class RateLimit:
    """Per-stream choice of the frames to analyse, at most ``max_fps`` a second (0: every frame).

    Memory: two floats per stream seen; :meth:`forget` drops a stream that moved elsewhere.
    """

    def __init__(self, max_fps: float):
        if not max_fps >= 0:
            raise ValueError(f"max_fps must be >= 0, got {max_fps!r}")
        self.max_fps = max_fps
        self.interval = 1.0 / max_fps if max_fps > 0 else 0.0
        # stream -> (the next grid point, the time of its newest frame)
        self._streams: dict[str, tuple[float, float]] = {}

    def admit(self, stream: str, ts: float) -> bool:
        """True when the frame of ``stream`` at event time ``ts`` (seconds) is to be analysed."""
        interval = self.interval
        if not interval:
            return True
        state = self._streams.get(stream)
        if state is None or ts < state[0] - 2 * interval:  # a new stream, or its clock went back
            self._streams[stream] = (ts + interval, ts)
            return True
        due, last = state
        gap = min(max(ts - last, 0.0), interval)
        if ts < due - gap / 2:
            self._streams[stream] = (due, ts)
            return False
        # on the grid, or behind it by half an interval or more: start again from this frame
        self._streams[stream] = (due + interval if ts < due + interval / 2 else ts + interval, ts)
        return True

    def forget(self, stream: str) -> None:
        """Drop a stream's schedule (it moved to another replica): its next frame is analysed."""
        self._streams.pop(stream, None)

    def __len__(self) -> int:
        return len(self._streams)
