"""Logging set-up. kafka-python logs every failed reconnect (several a second while a broker is
away); the throttle lets each distinct message through once a minute, so an outage reads as a few
lines, not thousands."""

import atexit
import importlib.util
import json
import logging
import os
import re
import select
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d %(threadName)s] %(name)s: %(message)s"


class KafkaLogThrottle(logging.Filter):
    def __init__(self, window_s: float = 60.0, kafka_dir: str = "") -> None:
        super().__init__()
        self.window_s = window_s
        self.kafka_dir = kafka_dir
        self._last_seen: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kafka"):
            # kafka-python's SASL modules log on the root logger: "Authenticated as <user>" for
            # every connection (info, dropped as kafka's are) and a traceback for every refusal.
            if not (self.kafka_dir and record.name == "root" and record.pathname.startswith(self.kafka_dir)):
                return True
            if record.levelno < logging.WARNING:
                return False
        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self._last_seen.get(key, -self.window_s) < self.window_s:
            return False
        self._last_seen[key] = now
        return True


def span_fields() -> dict[str, str]:
    """trace_id / span_id of the current span, when there is one."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


def trace_fields() -> dict[str, str]:
    """span_fields() and the request_id of the current request, when any."""
    from flask import has_request_context, request

    fields = span_fields()
    if has_request_context() and (request_id := request.environ.get("HTTP_X_REQUEST_ID")):
        fields["request_id"] = request_id
    return fields


def json_entry(created: float, level: str, logger: str, message: str, process: int,
               thread: str) -> dict[str, object]:
    """The fields every LOG_FORMAT=json line starts with."""
    moment = time.localtime(created)
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", moment) + f".{int(created % 1 * 1000):03d}"
                + time.strftime("%z", moment),
        "level": level, "logger": logger, "message": message, "process": process, "thread": thread,
    }


class JsonFormatter(logging.Formatter):
    """LOG_FORMAT=json: one JSON object a line; the message and any traceback escaped inside it."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            **json_entry(record.created, record.levelname, record.name, record.getMessage(),
                         record.process, record.threadName),
            **trace_fields(),
            # Structured lines (the audit log) carry their fields as keys.
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(app: Flask) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=app.config["LOG_LEVEL"], format=LOG_FORMAT)
        kafka_dir = os.path.dirname(importlib.util.find_spec("kafka").origin) + os.sep
        for handler in root.handlers:
            handler.addFilter(KafkaLogThrottle(kafka_dir=kafka_dir))
            if app.config["LOG_FORMAT"] == "json":
                handler.setFormatter(JsonFormatter())
    # kafka-python logs every connection at INFO; its warnings and errors are what matter.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    # The fetcher logs an ERROR for the fetch that close() cancels on every clean shutdown; real
    # fetch trouble also shows in kafka.conn and kafka.client, which stay at WARNING.
    logging.getLogger("kafka.consumer.fetcher").setLevel(logging.CRITICAL)


access_log = logging.getLogger("order_service.access")

# An id's 16 random bytes come from a pool per thread, refilled with one os.urandom call this often.
REQUEST_IDS_PER_REFILL = 256
# A worker's flusher writes its access lines once this many wait, or ACCESS_LOG_FLUSH_MS after the
# last batch; past HELD_MAX (stderr slower than the requests), each request waits for the write.
ACCESS_LINES_BATCH = 256
ACCESS_LINES_HELD_MAX = 4 * ACCESS_LINES_BATCH
# One write() to a pipe is kept whole only up to PIPE_BUF bytes (4096 on Linux, POSIX's minimum is
# 512): a batch goes out in pieces of whole lines up to this size, so the workers' lines on one
# stderr pipe never cut into each other.
ATOMIC_WRITE_BYTES = select.PIPE_BUF


# A request's access line, as its request thread saw it: (time, thread name, client address, method,
# path, status, request id, the current span's ids for LOG_FORMAT=json). The flusher formats it.
AccessEntry = tuple[float, str, str, str, str, str, str, dict[str, str]]
# A path longer than this is written at once rather than queued, so that the queue holds only short
# entries. Escaping makes a WSGI path (latin-1) at most four times longer (five in a JSON line), so
# its line still fits one whole write.
QUEUED_PATH_MAX = ATOMIC_WRITE_BYTES // 8


def access_line(entry: AccessEntry, pid: int, json_lines: bool = False) -> bytes:
    """One line in LOG_FORMAT's layout, for stderr (where the log handler writes), made without
    the logging module, whose records, formatters and locks cost more than a cache hit's whole
    answer. Client-chosen text is escaped, so a path cannot forge a line of its own."""
    created, thread, remote, method, path, status, request_id, span = entry
    if not (path.isprintable() and method.isprintable()):
        path, method = (text.encode("unicode_escape").decode("ascii") for text in (path, method))
    if json_lines:
        line = json.dumps({
            **json_entry(created, "INFO", access_log.name, f'{remote} "{method} {path}" {status}', pid,
                         thread),
            **span, "request_id": request_id,
        }, ensure_ascii=False) + "\n"
        return line.encode("utf-8", "replace")
    moment = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(created))
    line = (f"{moment},{int(created % 1 * 1000):03d} INFO [{pid} {thread}] {access_log.name}: "
            f'{remote} "{method} {path}" {status} request_id={request_id}\n')
    return line.encode("utf-8", "replace")


class AccessLog:
    """The access lines of one process, made and written to `fd` a batch at a time. Under load every
    system call releases the GIL to another thread and waits to get it back, and a request's own
    code runs on cold CPU caches: making and writing its line in the request was a clear part of a
    cold read's cost (bench/README.md, "the access line and the request id"). So a request only
    queues what the line says, and a flusher thread makes and writes the lines every `flush_ms`, or
    as soon as ACCESS_LINES_BATCH wait. What is held stays bounded: past ACCESS_LINES_HELD_MAX
    entries a request writes them itself (so a stalled stderr slows requests, as unbatched writes
    did, rather than filling memory), and so does a request with a long path. close() writes the
    rest; it runs at exit, so a worker that stops gracefully loses no line, and one killed outright
    loses at most `flush_ms` of them. flush_ms=0 writes each line at once, and so does a log that
    has been closed."""

    def __init__(self, flush_ms: int, json_lines: bool = False, fd: int = 2) -> None:
        self.flush_s = flush_ms / 1000
        self.json_lines = json_lines
        self.fd = fd
        self._forked()
        _reset_in_forked_children(self)
        atexit.register(self.close)

    def _forked(self) -> None:
        """A new process's state (and the first one's). What the parent queued is the parent's to
        write; its lock may have been held at the fork, and its flusher thread did not cross it."""
        # Appends and pops are atomic: no lock on a request's way.
        self._queued: deque[AccessEntry] = deque()
        self._writing = threading.Lock()  # one batch at a time, so that lines keep their order
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._flusher: threading.Thread | None = None

    def add(self, remote: str, method: str, path: str, status: str, request_id: str) -> None:
        entry = (time.time(), threading.current_thread().name, remote, method, path, status, request_id,
                 span_fields() if self.json_lines else {})
        if not self.flush_s or len(path) > QUEUED_PATH_MAX or self._stopped.is_set():
            self.flush(also=entry)
            return
        self._queued.append(entry)
        if self._flusher is None:
            self._start_flusher()
        queued = len(self._queued)
        if queued >= ACCESS_LINES_HELD_MAX:
            self.flush()
        elif queued >= ACCESS_LINES_BATCH and not self._wake.is_set():
            self._wake.set()

    def flush(self, also: AccessEntry | None = None) -> None:
        """Write every queued line (then `also`'s), in pieces of whole lines that one write() keeps
        whole."""
        with self._writing:
            pid = os.getpid()
            entries = [self._queued.popleft() for _ in range(len(self._queued))]
            if also is not None:
                entries.append(also)
            piece: list[bytes] = []
            size = 0
            for entry in entries:
                line = access_line(entry, pid, self.json_lines)
                if piece and size + len(line) > ATOMIC_WRITE_BYTES:
                    _write_whole(self.fd, b"".join(piece))
                    piece, size = [], 0
                piece.append(line)
                size += len(line)
            if piece:
                _write_whole(self.fd, b"".join(piece))

    def close(self) -> None:
        self._stopped.set()
        self._wake.set()
        self.flush()

    def _start_flusher(self) -> None:
        with self._writing:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(target=self._flush_until_stopped, name="access-log", daemon=True)
        self._flusher.start()

    def _flush_until_stopped(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self.flush()


def _write_whole(fd: int, data: bytes) -> None:
    """All of `data`, waiting while a non-blocking stderr is full. Lines that can't be written
    (stderr closed, a full disk) are dropped: there is nowhere left to say so, and the requests they
    describe are already answered."""
    view = memoryview(data)
    try:
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                select.select([], [fd], [])
    except OSError:
        pass


class RequestIds:
    """New request ids: 16 random bytes as 32 hex characters, as unguessable as os.urandom's, drawn
    from a pool per thread that one os.urandom call refills every REQUEST_IDS_PER_REFILL ids (that
    call, like a write, releases the GIL: bench/README.md, "the access line and the request id")."""

    _POOL_BYTES = 16 * REQUEST_IDS_PER_REFILL

    def __init__(self) -> None:
        self._forked()
        _reset_in_forked_children(self)

    def _forked(self) -> None:
        # A pool that crossed a fork would give the child its parent's next ids.
        self._local = threading.local()

    def new(self) -> str:
        local = self._local
        start = getattr(local, "next", self._POOL_BYTES)
        if start >= self._POOL_BYTES:
            local.pool, start = os.urandom(self._POOL_BYTES), 0
        local.next = start + 16
        return local.pool[start:start + 16].hex()


def _reset_in_forked_children(instance: AccessLog | RequestIds) -> None:
    """instance._forked() in every child process forked from now on, while `instance` lives. The
    registration can't be undone, so it holds `instance` only by a weak reference."""
    alive = weakref.ref(instance)

    def reset() -> None:
        if (still := alive()) is not None:
            still._forked()

    os.register_at_fork(after_in_child=reset)


class RequestIdMiddleware:
    """WSGI layer around everything (under ProxyFix only): every request gets an id (the edge's
    X-Request-ID when it is a valid one, else a new one), which goes back in the response and into
    one access-log line, so that the edge's log line and the app's can be matched."""

    def __init__(self, wsgi_app: Callable, pattern: str, lines: AccessLog | None) -> None:
        """`lines`: where the access lines go, None for none."""
        self.wsgi_app = wsgi_app
        self.valid = re.compile(pattern).fullmatch
        self.lines = lines
        self.ids = RequestIds()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        sent = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = sent if self.valid(sent) else self.ids.new()
        environ["HTTP_X_REQUEST_ID"] = request_id

        def start_with_id(status: str, headers: list, exc_info=None):
            if self.lines is not None:
                self.lines.add(environ.get("REMOTE_ADDR", "-"), environ.get("REQUEST_METHOD", "-"),
                               environ.get("PATH_INFO", ""), status.split(" ", 1)[0], request_id)
            headers.append(("X-Request-ID", request_id))
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start_with_id)
