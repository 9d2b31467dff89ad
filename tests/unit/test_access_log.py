"""The app's access-log lines and request ids: one line per request, whatever the client put in its
path, written in batches that keep lines whole and in order, none lost at a stop."""

import json
import os
import re
import signal
import socket
import threading
import time

import pytest

from app.logs import (
    ACCESS_LINES_BATCH,
    ATOMIC_WRITE_BYTES,
    QUEUED_PATH_MAX,
    REQUEST_IDS_PER_REFILL,
    AccessLog,
    RequestIds,
    access_line,
)
from harness.waiting import wait_until
from tests.helpers import in_child

LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO \[(\d+) ([^\]]+)\] "
                  r'order_service\.access: (\S+) "(\S+) (.*)" (\d{3}) request_id=(\S+)\n')


def entry(path: str, request_id: str, status: str = "200") -> tuple:
    return (time.time(), "worker-1", "10.0.0.1", "GET", path, status, request_id, {})


def test_a_line_carries_the_request_and_its_id():
    line = access_line(entry("/order/abc", "req-1", "404"), pid=4242).decode()
    fields = LINE.fullmatch(line).groups()
    assert fields == ("4242", "worker-1", "10.0.0.1", "GET", "/order/abc", "404", "req-1")


def test_a_json_line_carries_the_same_fields():
    traced = (*entry("/order/abc", "req-1")[:-1], {"trace_id": "ab" * 16})
    made = access_line(traced, pid=4242, json_lines=True)
    fields = json.loads(made)
    assert made.endswith(b"}\n") and fields["logger"] == "order_service.access"
    assert fields["process"] == 4242
    assert fields["message"] == '10.0.0.1 "GET /order/abc" 200' and fields["request_id"] == "req-1"
    assert fields["trace_id"] == "ab" * 16


def test_a_path_cannot_forge_a_line_of_its_own():
    line = access_line(entry("/x\n2026-01-01 00:00:00,000 INFO fake\r", "req-2"), pid=1).decode()
    assert line.count("\n") == 1 and "\\n2026-01-01" in line and "request_id=req-2" in line


@pytest.fixture
def packets():
    """A socket pair whose one end stands for stderr: each write() arrives as one packet, so a test
    sees exactly what every write carried."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)

    def received() -> list[bytes]:
        got = []
        while True:
            try:
                got.append(ours.recv(1 << 20))
            except BlockingIOError:
                return got

    received.fd = theirs.fileno()
    yield received
    ours.close()
    theirs.close()


def add(log: AccessLog, count: int, tag: str = "r") -> list[str]:
    """`count` requests' lines added to `log`; their request ids, in order."""
    ids = [f"{tag}-{n}" for n in range(count)]
    for request_id in ids:
        log.add("10.0.0.1", "GET", f"/order/{request_id}", "200", request_id)
    return ids


def ids_in(writes: list[bytes]) -> list[str]:
    """The request ids of the lines in `writes`, each of which must be whole lines."""
    assert all(write.endswith(b"\n") for write in writes)
    return [LINE.fullmatch(line).group(7) for line in b"".join(writes).decode().splitlines(keepends=True)]


def test_lines_wait_for_the_flush_interval_and_arrive_in_order(packets):
    log = AccessLog(flush_ms=50, fd=packets.fd)
    sent = add(log, 10)
    writes: list[bytes] = []
    wait_until(lambda: writes.extend(packets()) or ids_in(writes) == sent, 5, "the flusher wrote the lines")
    assert len(writes) < len(sent), "the lines went out one write each"
    log.close()


def test_a_stop_writes_what_is_still_queued(packets):
    log = AccessLog(flush_ms=10_000, fd=packets.fd)
    sent = add(log, 5)
    assert packets() == []  # held back: the flusher waits 10 s
    log.close()
    assert ids_in(packets()) == sent


def test_a_full_batch_is_written_at_once(packets):
    log = AccessLog(flush_ms=10_000, fd=packets.fd)
    sent = add(log, ACCESS_LINES_BATCH - 1)
    assert packets() == []
    sent += add(log, 1, tag="last")
    writes: list[bytes] = []
    # Well before the 10 s interval.
    wait_until(lambda: writes.extend(packets()) or ids_in(writes) == sent, 5, "the batch was written")
    # No write holds more than a pipe keeps whole (ids_in checks that each holds whole lines).
    assert all(len(write) <= ATOMIC_WRITE_BYTES for write in writes)
    assert len(writes) < len(sent) // 10
    log.close()


def test_a_long_path_is_written_at_once_after_the_lines_before_it(packets):
    log = AccessLog(flush_ms=10_000, fd=packets.fd)
    sent = add(log, 2)
    # Every character escaped to four: a line longer than one whole write goes out alone.
    log.add("10.0.0.1", "GET", "/" + "\x01" * QUEUED_PATH_MAX * 2, "414", "long")
    writes = packets()
    assert ids_in(writes) == [*sent, "long"] and len(writes[-1]) > ATOMIC_WRITE_BYTES
    add(log, 1, tag="after")
    log.close()
    assert ids_in(packets()) == ["after-0"]


def test_a_line_added_after_the_stop_is_written_at_once(packets):
    log = AccessLog(flush_ms=10_000, fd=packets.fd)
    log.close()
    add(log, 1, tag="late")
    assert ids_in(packets()) == ["late-0"]


def test_without_a_flush_interval_each_line_is_written_at_once(packets):
    log = AccessLog(flush_ms=0, fd=packets.fd)
    for tag in ("a", "b"):
        add(log, 1, tag=tag)
        assert [ids_in([write]) for write in packets()] == [[f"{tag}-0"]]


def test_lines_from_many_threads_are_all_written_once_in_each_threads_order(packets):
    log = AccessLog(flush_ms=20, fd=packets.fd)
    sent: dict[str, list[str]] = {}
    threads = [threading.Thread(target=lambda tag=f"t{n}": sent.setdefault(tag, add(log, 300, tag=tag)))
               for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    written = ids_in(packets())
    assert sorted(written) == sorted(request_id for ids in sent.values() for request_id in ids)
    for tag, ids in sent.items():
        assert [request_id for request_id in written if request_id.startswith(f"{tag}-")] == ids


def test_a_forked_child_writes_only_its_own_lines_even_when_forked_in_the_middle_of_a_write(packets):
    log = AccessLog(flush_ms=10_000, fd=packets.fd)
    parents = add(log, 3, tag="parent")
    with log._writing:  # as if the flusher were writing a batch at the moment of the fork
        child = os.fork()
        if child == 0:
            in_child(lambda: (add(log, 1, tag="child"), log.close()))
    exit_codes: list[int] = []

    def exited() -> bool:
        reaped, status = os.waitpid(child, os.WNOHANG)
        if reaped:
            exit_codes.append(os.waitstatus_to_exitcode(status))
        return bool(reaped)

    try:
        wait_until(exited, 10, "the child wrote its line and exited (not stuck on its parent's lock)")
    finally:
        if not exit_codes:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
    assert exit_codes == [0]
    assert ids_in(packets()) == ["child-0"]  # not the parent's queued lines again
    log.close()
    assert ids_in(packets()) == parents


def test_request_ids_are_32_hex_characters_and_never_repeat():
    ids = RequestIds()
    made = [ids.new() for _ in range(3 * REQUEST_IDS_PER_REFILL + 7)]  # across refills
    assert all(re.fullmatch(r"[0-9a-f]{32}", made_id) for made_id in made)
    assert len(set(made)) == len(made)
    other_thread: list[str] = []
    thread = threading.Thread(target=lambda: other_thread.extend(ids.new() for _ in range(100)))
    thread.start()
    thread.join()
    assert not set(other_thread) & set(made)


def test_a_forked_child_does_not_repeat_its_parents_ids():
    ids = RequestIds()
    ids.new()  # the pool is filled in the parent
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        in_child(lambda: os.write(write_end, ids.new().encode()))
    os.close(write_end)
    assert os.waitpid(child, 0)[1] == 0
    childs = os.read(read_end, 64).decode()
    os.close(read_end)
    assert re.fullmatch(r"[0-9a-f]{32}", childs) and childs != ids.new()
