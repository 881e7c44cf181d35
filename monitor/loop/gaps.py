"""Where a drifted window leaves the training set: its frames the training set does not cover,
grouped (monitor.loop.coverage.uncovered_groups), each group with an example frame. It rides on
the drift event (``DriftEvent.gaps``): the report shows the examples, the ticket asks for frames
like them — a targeted collection request, not just "drift"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from monitor.files import JSONObject
from monitor.loop.coverage import uncovered_groups
from monitor.pipeline.streams import FrameRef


@dataclass(frozen=True)
class Gap:
    """A group of uncovered frames: how many, and the one nearest the group's centre."""

    frames: int
    example_index: int  # into the event's window
    example_frame_id: str

    def to_dict(self) -> JSONObject:
        return {
            "frames": self.frames,
            "example_index": self.example_index,
            "example_frame_id": self.example_frame_id,
        }

    @classmethod
    def from_dict(cls, d: JSONObject) -> Gap:
        return cls(d["frames"], d["example_index"], d["example_frame_id"])


@dataclass(frozen=True)
class Gaps:
    """The window's training coverage and its uncovered frames, grouped (largest first)."""

    covered: float  # share of the window's frames the training set covers
    frames: int  # the window's frames
    groups: tuple[Gap, ...]

    @property
    def uncovered(self) -> int:
        return sum(g.frames for g in self.groups)

    def text(self) -> str:
        if not self.groups:
            return f"the training set covers {100 * self.covered:.0f}% of the window"
        examples = ", ".join(g.example_frame_id for g in self.groups)
        return (
            f"{self.uncovered} of {self.frames} frames lie outside the training set, in "
            f"{len(self.groups)} group(s) (examples: {examples})"
        )

    def to_dict(self) -> JSONObject:
        return {
            "covered": self.covered,
            "frames": self.frames,
            "groups": [g.to_dict() for g in self.groups],
        }

    @classmethod
    def from_dict(cls, d: JSONObject) -> Gaps:
        return cls(d["covered"], d["frames"], tuple(Gap.from_dict(g) for g in d["groups"]))


def gaps_of(embeddings: np.ndarray, covered: np.ndarray, refs: Sequence[FrameRef | None]) -> Gaps:
    """The window's gaps: its uncovered frames grouped in embedding space."""
    groups = sorted(uncovered_groups(embeddings, covered), key=lambda g: -g.size)
    return Gaps(
        covered=float(np.mean(covered)) if len(covered) else 1.0,
        frames=int(len(covered)),
        groups=tuple(
            Gap(
                int(g.size),
                int(g.example),
                ref.frame_id if (ref := refs[g.example]) is not None else f"#{g.example}",
            )
            for g in groups
        ),
    )
