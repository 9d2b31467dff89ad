"""Kafka ingest: one consumer thread per process, owned by a ConsumerRuntime.

gunicorn.conf.py drives it in every worker: `post_fork` starts the thread, `post_worker_init`
hands it the worker's app, and `worker_exit` stops it and waits for it to commit and leave the
group. `flask consume` runs the same runtime in the foreground.
"""

import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask

from app.cache import order_cache_for
from app.documents import ServedOrder
from app.ingest.consumer import OrderConsumer

log = logging.getLogger(__name__)


def cache_write_through(app: Flask) -> Callable[[list[ServedOrder]], None]:
    """The consumer's on_stored: stored orders written through to `app`'s cache."""
    return order_cache_for(app).put_served


class ConsumerRuntime:
    """A named daemon thread that runs an OrderConsumer once it is given the app."""

    def __init__(self) -> None:
        self._app_ready = threading.Event()
        self._stopping = threading.Event()
        self._app: Flask | None = None
        self.consumer: OrderConsumer | None = None
        self.thread = threading.Thread(target=self._run, name="order-consumer", daemon=True)

    def start(self) -> "ConsumerRuntime":
        self.thread.start()
        return self

    def attach(self, app: Flask) -> None:
        self._app = app
        # /readyz reads its status().
        app.extensions["order_consumer"] = self
        self._app_ready.set()

    def _run(self) -> None:
        self._app_ready.wait()
        if self._stopping.is_set() or self._app is None:
            return
        if not self._app.config["CONSUMER_ENABLED"]:
            log.info("consumer disabled (CONSUMER_ENABLED=false): this worker only serves reads")
            return
        self.consumer = OrderConsumer(self._app, on_stored=cache_write_through(self._app))
        if self._stopping.is_set():
            return
        self.consumer.run()

    def stop(self) -> None:
        """Ask the consumer to finish its batch and leave the group; returns at once."""
        self._stopping.set()
        if self.consumer is not None:
            self.consumer.stop()
        self._app_ready.set()

    def shutdown(self, timeout: float) -> bool:
        """Stop consuming and wait up to `timeout` seconds; True if the thread ended in time."""
        self.stop()
        self.thread.join(timeout)
        if self.thread.is_alive():
            log.warning(
                "consumer did not stop within %.0f s; its uncommitted records will be redelivered",
                timeout,
            )
            return False
        return True

    def status(self) -> dict[str, Any]:
        """What /readyz shows of this process's consumer."""
        if self._app is not None and not self._app.config["CONSUMER_ENABLED"]:
            return {"state": "disabled"}
        if self.consumer is None:
            return {"state": "stopped" if self._stopping.is_set() else "starting"}
        return self.consumer.status()
