"""A Kafka broker of a test's own, for faults the shared one must never see: stopped under a
running service, or its log segments damaged on disk. It is `make infra`'s broker (devstack/kafka.py:
the same jars, settings and storage format) in a home of the test's, on free ports; it is killed and
its data removed when the block ends."""

import os
import shutil
import signal
import socket
import subprocess
from dataclasses import replace
from pathlib import Path

from config import private_dir
from devstack.kafka import Kafka
from devstack.settings import Settings
from harness.service import free_port
from harness.waiting import wait_until

# Small, since it serves one test: the broker's defaults are 1 GiB.
_HEAP = ("-Xms128m", "-Xmx384m")


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return list(ports)


class PrivateKafka:
    """`with PrivateKafka(directory) as broker:` a broker at `broker.bootstrap`."""

    def __init__(self, directory: Path, partitions: int = 6) -> None:
        self.directory = directory
        self.port, controller_port, sasl_port = _free_ports(3)
        self.bootstrap = f"127.0.0.1:{self.port}"
        settings = replace(Settings.from_env(), home=directory, kafka_host="127.0.0.1", kafka_port=self.port,
                           kafka_controller_port=controller_port, kafka_sasl_port=sasl_port,
                           partitions=partitions)
        self._broker = Kafka(settings)
        self.data = self._broker.data
        self.log_path = self._broker.log
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> "PrivateKafka":
        for path in (self.directory, self.directory / "logs", self._broker.dir):
            path.mkdir(parents=True, exist_ok=True)
            private_dir(path)
        libs = self._broker.libs()
        self._broker.render_config()
        self._broker.format_storage(libs)
        self._command = self._broker.command(libs, heap=_HEAP)
        self.start()
        return self

    def start(self) -> None:
        """Start (again, after stop()) on the same ports and data, and wait until it listens."""
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self._command, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)
        wait_until(lambda: self._listening() or self._process.poll() is not None, 90,
                   f"the private broker listens on {self.bootstrap} (log: {self.log_path})")
        assert self._process.poll() is None, f"the private broker exited; see {self.log_path}"

    def stop(self, graceful: bool = False) -> None:
        """Kill the broker (SIGKILL, as in a crash), or stop it (SIGTERM: a clean shutdown, which
        it restarts from in half the time). Either way its clients see their connections close."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM if graceful else signal.SIGKILL)
            self._process.wait(timeout=60)
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def segment(self, topic: str, partition: int) -> Path:
        """The partition's first log segment (where the records produced first are)."""
        return self.data / f"{topic}-{partition}" / "00000000000000000000.log"

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)
