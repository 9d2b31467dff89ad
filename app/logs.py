"""Logging set-up. kafka-python logs every failed reconnect (several a second while a broker is
away); the throttle lets each distinct message through once a minute, so an outage reads as a few
lines, not thousands."""

import logging
import time

from flask import Flask

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d %(threadName)s] %(name)s: %(message)s"


class KafkaLogThrottle(logging.Filter):
    def __init__(self, window_s: float = 60.0) -> None:
        super().__init__()
        self.window_s = window_s
        self._last_seen: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kafka"):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self._last_seen.get(key, -self.window_s) < self.window_s:
            return False
        self._last_seen[key] = now
        return True


def configure_logging(app: Flask) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=app.config["LOG_LEVEL"], format=LOG_FORMAT)
        for handler in root.handlers:
            handler.addFilter(KafkaLogThrottle())
    # kafka-python logs every connection at INFO; its warnings and errors are what matter.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    # The fetcher logs an ERROR for the fetch that close() cancels on every clean shutdown; real
    # fetch trouble also shows in kafka.conn and kafka.client, which stay at WARNING.
    logging.getLogger("kafka.consumer.fetcher").setLevel(logging.CRITICAL)
