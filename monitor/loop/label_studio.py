"""Labels read back from Label Studio: by polling the relabel project, or from its webhook.

The reader shares the relabel sink's HTTP client and project lookup
(:class:`~monitor.actions.sinks.LabelStudioSink`), so both speak to the one project the sink fills.
"""

from __future__ import annotations

import json
from typing import Any

from monitor.actions.sinks import LabelStudioSink
from monitor.config import LabelStudioConfig
from monitor.errors import InputError
from monitor.loop.labels import Label, label_from_label_studio

#: Webhook actions that carry annotations (Label Studio 1.23's ``WebhookAction``).
ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")
PAGE_SIZE = 100


class LabelStudioLabels:
    """Every annotation of the relabel project's tasks, as :class:`Label` s.

    Pages through ``GET /api/tasks?project=<id>&fields=all`` (Label Studio answers ``{"total",
    "tasks": [...]}`` with each task's ``annotations``; past the last page it answers 404). The
    project is found by title and never created here: no project yet means no labels yet.
    """

    def __init__(self, config: LabelStudioConfig, sink: LabelStudioSink | None = None):
        self.sink = sink or LabelStudioSink(config)

    def fetch(self) -> list[Label]:
        """Raises :class:`~monitor.actions.sinks.SinkError` (an UnavailableError) when Label Studio
        cannot be reached."""
        pid = self.sink.find_project()
        if pid is None:
            return []
        labels: list[Label] = []
        page = 1
        while True:
            got = self.sink.request(
                "GET",
                f"/api/tasks?project={pid}&fields=all&page={page}&page_size={PAGE_SIZE}",
                ok=(200,),
            )
            tasks = got.get("tasks", []) if isinstance(got, dict) else got
            for task in tasks:
                for annotation in task.get("annotations") or []:
                    if (label := label_from_label_studio(task, annotation)) is not None:
                        labels.append(label)
            total = int(got.get("total", 0)) if isinstance(got, dict) else len(tasks)
            if not tasks or page * PAGE_SIZE >= total:
                return labels
            page += 1


def parse_webhook(body: bytes) -> list[Label]:
    """The labels of a Label Studio webhook payload.

    ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED``: ``{"action", "annotation": {...}, "task":
    {...}, "project": {...}}``; ``ANNOTATIONS_CREATED`` (bulk): ``annotation`` and ``task`` are
    lists, each annotation naming its task's id in ``task``. Other actions give no labels; a body
    that is not such JSON raises :class:`~monitor.errors.InputError`.
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"label studio webhook: body is not JSON: {e}") from None
    if not isinstance(payload, dict):
        raise InputError("label studio webhook: body is not a JSON object")
    action = payload.get("action")
    if action not in ANNOTATION_ACTIONS:
        return []
    annotations, tasks = payload.get("annotation"), payload.get("task")
    if action != "ANNOTATIONS_CREATED":
        annotations, tasks = [annotations], [tasks]
    if not (
        isinstance(annotations, list)
        and isinstance(tasks, list)
        and all(isinstance(x, dict) for x in annotations + tasks)
    ):
        raise InputError(f"label studio webhook {action}: no annotation and task objects")
    by_id: dict[Any, dict[str, Any]] = {t.get("id"): t for t in tasks}
    labels = []
    for a in annotations:
        task = by_id.get(a.get("task"))
        if task is None and len(tasks) == 1:
            task = tasks[0]
        if task is None:
            raise InputError(
                f"label studio webhook {action}: annotation {a.get('id')} names no task sent"
            )
        if (label := label_from_label_studio(task, a)) is not None:
            labels.append(label)
    return labels
