"""State shared by several processes (replicas with one ``actions.state_dir``): the queued-frames
ledger, tickets and drift events, written by processes at once, lose and duplicate nothing; each
process sees what the others wrote."""

import json
import multiprocessing
from dataclasses import replace

from monitor.actions.events import EventStore
from monitor.actions.selection import Queued, QueueLedger
from monitor.actions.sinks import KeyLedger
from monitor.actions.tickets import HISTORY_MAX, TicketBook, parse_webhook
from monitor.config import TicketsConfig
from monitor.files import DirectoryView, locked

from .conftest import drift_event, frame
from .test_tickets import alert, payload

PROCESSES = 4
DAY = 1_800_000_000.0


def in_processes(target, *args):
    """Run ``target(i, results, *args)`` in PROCESSES forked processes at once; their results."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    start = ctx.Event()
    procs = [
        ctx.Process(target=_when_started, args=(start, target, i, results, *args))
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    start.set()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return got


def _when_started(start, target, i, results, *args):
    start.wait(10)
    results.put(target(i, *args))


# --- the ledger ---------------------------------------------------------------------------------


def _append(i, path):
    ledger = QueueLedger(path)
    for batch in range(20):
        ledger.add([Queued(f"cam-{i}/{batch}-{k}", f"cam-{i}", "e", k) for k in range(5)], DAY)
    return len(ledger)


def test_processes_appending_to_one_ledger_lose_no_frame(tmp_path):
    path = tmp_path / "queued.jsonl"
    in_processes(_append, path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == PROCESSES * 20 * 5
    assert len({e["key"] for e in lines}) == len(lines)
    ledger = QueueLedger(path)
    assert len(ledger) == len(lines) and ledger.queued_on("2027-01-15") == len(lines)


def _claim(i, path, keys, limit):
    ledger = QueueLedger(path)
    order = keys[i::PROCESSES] + keys  # each starts elsewhere, then tries them all
    claimed = []
    for at in range(0, len(order), 7):
        batch = [Queued(k, "cam", f"e{i}", None) for k in order[at : at + 7]]
        claimed += [q.key for q in ledger.claim(batch, DAY, limit)]
    return claimed


def test_processes_claiming_the_same_frames_queue_each_once(tmp_path):
    path = tmp_path / "queued.jsonl"
    keys = [f"cam/{k}" for k in range(120)]
    claimed = in_processes(_claim, path, keys, None)
    everyone = [k for c in claimed for k in c]
    assert sorted(everyone) == sorted(keys)  # each frame claimed by exactly one process
    lines = [json.loads(line)["key"] for line in path.read_text().splitlines()]
    assert sorted(lines) == sorted(keys)


def test_processes_claiming_together_keep_the_days_budget(tmp_path):
    path = tmp_path / "queued.jsonl"
    keys = [f"cam/{k}" for k in range(120)]
    claimed = in_processes(_claim, path, keys, 50)
    assert sum(len(c) for c in claimed) == 50
    assert QueueLedger(path).queued_on("2027-01-15") == 50


def test_a_ledger_sees_what_another_appended_and_compacted(tmp_path):
    path = tmp_path / "queued.jsonl"
    mine, theirs = QueueLedger(path, remember=10), QueueLedger(path, remember=10)
    theirs.add([Queued("cam/1", "cam", "e", 1)], DAY)
    assert "cam/1" in mine and mine.recent_hashes("cam") == [1]
    assert mine.claim([Queued("cam/1", "cam", "e", 1), Queued("cam/2", "cam", "e", 2)], DAY) == [
        Queued("cam/2", "cam", "e", 2, DAY, "2027-01-15")
    ]
    for k in range(3, 40):  # past 2 x remember lines: compacted (the file replaced)
        theirs.add([Queued(f"cam/{k}", "cam", "e", k)], DAY)
    assert len(path.read_text().splitlines()) <= 20
    assert len(mine) == 10 and "cam/39" in mine and "cam/2" not in mine


def _deliver(i, path, keys):
    ledger = KeyLedger(path)
    delivered = []
    for key in keys[i * 7 :] + keys:
        with ledger.holding():  # as Actions' relabel workers deliver
            if key in ledger:
                continue
            delivered.append(key)
            ledger.add(key)
    return delivered


def test_processes_sharing_a_sinks_ledger_deliver_each_frame_once(tmp_path):
    path = tmp_path / "delivered" / "directory.keys"
    keys = [f"cam/{k}" for k in range(60)]
    delivered = in_processes(_deliver, path, keys)
    assert sorted(k for d in delivered for k in d) == sorted(keys)
    assert sorted(path.read_text().split()) == sorted(keys)


# --- tickets -------------------------------------------------------------------------------------


class NoEvents:
    def overlapping(self, stream, start, end):
        return []


def _post(i, directory, times):
    actions = []
    book = TicketBook(
        directory,
        TicketsConfig(token="t"),
        events=NoEvents(),
        link=str,
        on_change=lambda action, ticket: actions.append(action),
    )
    hook = parse_webhook(json.dumps(payload(alert())).encode())
    for k in range(times):
        book.apply(hook, now=DAY + i * 100 + k)
    return actions


def test_processes_receiving_one_alert_make_one_ticket_with_every_notification(tmp_path):
    actions = in_processes(_post, tmp_path, 10)
    everyone = [a for mine in actions for a in mine]
    assert everyone.count("created") == 1 and everyone.count("updated") == PROCESSES * 10 - 1
    assert [p.name for p in tmp_path.glob("drift-*.json")] == ["drift-a1b2c3.json"]
    book = TicketBook(
        tmp_path, TicketsConfig(token="t"), events=NoEvents(), link=str, on_change=print
    )
    (ticket,) = book.list()
    assert ticket.notifications == PROCESSES * 10
    assert len(ticket.history) == min(PROCESSES * 10, HISTORY_MAX)


def test_a_ticket_book_sees_tickets_another_process_wrote(tmp_path):
    def book():
        return TicketBook(
            tmp_path, TicketsConfig(token="t"), events=NoEvents(), link=str, on_change=print
        )

    mine, theirs = book(), book()
    mine._view.min_interval_s = 0.0
    hook = parse_webhook(json.dumps(payload(alert())).encode())
    theirs.apply(hook, now=DAY)
    assert [t.id for t in mine.list()] == ["drift-a1b2c3"]
    mine.apply(hook, now=DAY + 1)  # updates the one ticket, read fresh
    assert mine.get("drift-a1b2c3").notifications == 2


# --- drift events --------------------------------------------------------------------------------


def _open_and_update(i, directory):
    store = EventStore(directory)
    event = drift_event(opened_at=DAY + i)  # the same stream, a different id in each process
    opened = store.create(event, {"rows": [[0.0]]})
    for k in range(10):
        ref = frame("cam-1", 1000 * i + k)
        store.update(opened.id, lambda e, ref=ref: replace(e, healthy_refs=e.healthy_refs + (ref,)))
    return opened.id


def test_processes_opening_one_streams_event_at_once_share_one_and_lose_no_change(tmp_path):
    ids = in_processes(_open_and_update, tmp_path)
    assert len(set(ids)) == 1  # one open event for the stream, the others continued it
    assert len(list(tmp_path.glob("evt-*.json"))) == 1
    (event,) = EventStore(tmp_path).list()
    assert event.id == ids[0] and event.is_open
    assert len(event.healthy_refs) == 1 + PROCESSES * 10  # every process's changes are there


def test_a_store_sees_events_another_process_created_changed_and_closed(tmp_path):
    mine, theirs = EventStore(tmp_path, min_interval_s=0.0), EventStore(tmp_path)
    event = drift_event()
    theirs.create(event, {"rows": [[0.0]]})
    assert mine.open_for("cam-1") == event.id and mine.get(event.id) == event
    theirs.update(event.id, lambda e: e.with_evidence(status="done"))
    assert mine.get(event.id).evidence.status == "done"
    # a store writing keeps what the other wrote: it reads the event fresh
    mine.update(event.id, lambda e: e.closed(DAY + 60, "recovered"))
    assert mine.open_for("cam-1") is None and mine.open_count() == 0
    theirs._view.min_interval_s = 0.0
    assert theirs.get(event.id).evidence.status == "done" and not theirs.get(event.id).is_open
    assert theirs.open_for("cam-1") is None
    # another open event for the stream is refused while one is open
    again = drift_event(opened_at=DAY + 120)
    assert mine.create(again, {"rows": [[0.0]]}).id == again.id
    assert theirs.create(drift_event(opened_at=DAY + 180), {"rows": [[0.0]]}).id == again.id


def test_a_directory_view_sees_a_change_in_the_same_clock_tick(tmp_path):
    view = DirectoryView(tmp_path, "*.json", min_interval_s=0.0)
    (tmp_path / "a.json").write_text("{}")
    changed, _ = view.changes()
    for path, sig in changed:
        view.seen(path, sig)
    (tmp_path / "b.json").write_text("{}")  # likely within the directory mtime's tick
    assert [p.name for p, _ in view.changes()[0]] == ["b.json"]


def _hold(i, lock, directory):
    with locked(lock, wait=False) as mine:
        if not mine:
            return 0
        (directory / f"held-{i}").write_text("")
        import time

        time.sleep(0.5)
        return 1


def test_a_lock_not_waited_for_goes_to_one_process(tmp_path):
    assert sum(in_processes(_hold, tmp_path / ".lock", tmp_path)) == 1
    assert len(list(tmp_path.glob("held-*"))) == 1
