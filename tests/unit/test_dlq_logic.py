"""`flask dlq`'s pure parts: escaping untrusted bytes, reading coordinates, and what the replay
group remembers after runs with and without filters."""

from kafka.structs import OffsetAndMetadata

from app.dlq.records import DeadLetter, Source, escape, parse_source
from app.dlq.replay import METADATA_BUDGET, Ledger, Reason, advance_ledger, make_plan


def test_escape_leaves_nothing_a_terminal_acts_on():
    assert escape(b"plain caf\xc3\xa9", 100) == "plain café"
    assert escape(b"\x1b[2J\x07\x00\r\n\x7f", 100) == "\\x1b[2J\\x07\\x00\\x0d\\x0a\\x7f"
    assert escape(b"\xff\xfe", 100) == "\\xff\\xfe"
    assert escape("\u202egnp.exe \u2028 \u200b".encode(), 100) == "\\u202egnp.exe \\u2028 \\u200b"
    assert escape(b"a\\x41", 100) == "a\\\\x41"  # a literal backslash cannot pass for an escape
    assert escape("\U000e0041".encode(), 100) == "\\U000e0041"  # an invisible tag character
    assert escape(None, 10) == "(null)"


def test_escape_cuts_at_the_limit_without_splitting_a_character():
    assert escape("ééé".encode(), 3) == "é…"
    assert escape(b"\xff" * 50, 4) == "\\xff\\xff\\xff\\xff…"
    assert escape(b"abcd", 4) == "abcd"


def test_source_coordinates_must_be_well_formed():
    assert parse_source(b"orders", b"3", b"17") == Source("orders", 3, 17)
    for bad in [(None, b"3", b"17"), (b"orders", b"-1", b"17"), (b"orders", b"3", b"1e3"),
                (b"orders", b"3", b"9" * 20), (b"ord/ers", b"3", b"17"), (b"orders\xff", b"3", b"17"),
                (b"orders", "\u0663".encode(), b"17"), (b"", b"3", b"17")]:
        assert parse_source(*bad) is None, bad


def letter(offset: int, error_type: str, source_offset: int, value: bytes = b"{}",
           key: bytes | None = None) -> DeadLetter:
    return DeadLetter(0, offset, 1_000 + offset, Source("orders", 0, source_offset), error_type.encode(),
                      b"{}", key or f"key-{source_offset}".encode(), value)


def run(letters, ledger, **filters):
    plan = make_plan(letters, {0: ledger}, filters.get("error_type"), None, filters.get("limit"),
                     again=filters.get("again", False))
    acked = set(plan.to_replay) - filters.get("unacked", set())
    dealt_with = plan.settled | acked | {copy for copy, first in plan.copies.items() if first in acked}
    updated, forgotten = advance_ledger(ledger, plan.offsets.get(0, []), 0, dealt_with)
    # What the broker gives back on the next run.
    return plan, Ledger.from_commit(OffsetAndMetadata(updated.position, updated.metadata())), forgotten


def test_a_filtered_run_then_a_full_run_replay_each_source_record_once():
    letters = [letter(0, "invalid_json", 10, b"a"), letter(1, "conflict", 11, b"b"),
               letter(2, "invalid_json", 12, b"c"), letter(3, "conflict", 13, b"d"),
               letter(4, "conflict", 11, b"b"), letter(5, "invalid_json", 14, b"e")]
    plan, ledger, _ = run(letters, Ledger(), error_type="conflict")
    assert sorted(plan.to_replay) == [(0, 1), (0, 3)]
    assert plan.skipped == {Reason.FILTER: 3, Reason.DUPLICATE: 1}
    assert ledger == Ledger(0, [(1, 1), (3, 4)])

    plan, ledger, _ = run(letters, ledger)
    assert sorted(plan.to_replay) == [(0, 0), (0, 2), (0, 5)]
    assert ledger == Ledger(6, [])

    # The first one, replayed, failed again: a new dead letter with the same key and value. It is
    # left for a run with --again (not remembered), which replays it.
    came_back = letters + [letter(6, "invalid_json", 20, b"a", key=b"key-10")]
    plan, ledger, _ = run(came_back, ledger)
    assert plan.to_replay == {} and plan.skipped == {Reason.CAME_BACK: 1}
    assert ledger == Ledger(6, [])
    plan, ledger, _ = run(came_back, ledger)
    assert plan.to_replay == {} and plan.skipped == {Reason.CAME_BACK: 1}
    plan, ledger, _ = run(came_back, ledger, again=True)
    assert list(plan.to_replay) == [(0, 6)] and ledger == Ledger(7, [])


def test_a_replay_not_acknowledged_is_not_remembered_and_neither_are_its_copies():
    letters = [letter(0, "conflict", 10), letter(1, "conflict", 11), letter(2, "conflict", 10)]
    plan, ledger, _ = run(letters, Ledger(), unacked={(0, 0)})
    assert ledger == Ledger(0, [(1, 1)])
    plan, ledger, _ = run(letters, ledger)
    assert list(plan.to_replay) == [(0, 0)] and ledger == Ledger(3, [])


def test_a_limit_leaves_the_rest_for_the_next_run():
    letters = [letter(offset, "invalid_order", 100 + offset) for offset in range(5)]
    plan, ledger, _ = run(letters, Ledger(), limit=2)
    assert list(plan.to_replay) == [(0, 0), (0, 1)] and plan.skipped == {Reason.LIMIT: 3}
    assert ledger == Ledger(2, [])


def test_what_the_group_remembers_stays_within_the_brokers_metadata_limit():
    letters = [letter(offset, "conflict" if offset % 2 else "invalid_json", 10_000_000 + offset,
                      str(offset).encode()) for offset in range(4000)]
    plan, ledger, forgotten = run(letters, Ledger(), error_type="conflict")
    assert len(plan.to_replay) == 2000
    assert len(ledger.metadata()) <= METADATA_BUDGET
    assert forgotten == 2000 - len(ledger.ranges) > 0
