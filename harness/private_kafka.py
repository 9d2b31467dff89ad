"""A Kafka broker of a test's own, for faults the shared one must never see: stopped under a
running service, or its log segments damaged on disk. It runs from the jars `make infra` fetched,
with the repository's broker settings, on free ports, with its data in a directory of the test's;
it is killed and its data removed when the block ends."""

import os
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path

from harness import ROOT
from harness.service import free_port
from harness.waiting import wait_until

# Small, since it serves one test: the broker's defaults are 1 GiB.
_JVM_OPTIONS = ["-Xms128m", "-Xmx384m", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true"]


def kafka_libs() -> Path:
    """Where `make infra` put the broker's jars (scripts/infra.sh: $ORDER_SERVICE_HOME/kafka/libs)."""
    home = os.environ.get("ORDER_SERVICE_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "order-service")
    return Path(os.path.expanduser(home)) / "kafka" / "libs"


class PrivateKafka:
    """`with PrivateKafka(directory) as broker:` a broker at `broker.bootstrap`."""

    def __init__(self, directory: Path, partitions: int = 6) -> None:
        self.directory = directory
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.data = directory / "data"
        self.log_path = directory / "kafka.log"
        self._partitions = partitions
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> "PrivateKafka":
        libs = kafka_libs()
        assert any(libs.glob("kafka_2.13-*.jar")), f"no Kafka jars in {libs}: run `make infra` once"
        self.directory.mkdir(parents=True, exist_ok=True)
        properties = self.directory / "server.properties"
        # The placeholders scripts/infra.sh fills in, filled in the same way.
        text = (ROOT / "infra" / "kafka" / "server.properties").read_text()
        for name, value in {"KAFKA_PORT": self.port, "KAFKA_CONTROLLER_PORT": self.controller_port,
                            "KAFKA_DATA_DIR": self.data, "KAFKA_TOPIC_PARTITIONS": self._partitions}.items():
            text = text.replace("${" + name + "}", str(value))
        properties.write_text(text)
        self._java = ["java", *_JVM_OPTIONS,
                      f"-Dlog4j2.configurationFile={ROOT / 'infra' / 'kafka' / 'log4j2.properties'}",
                      "-cp", f"{libs}/*"]
        with self.log_path.open("ab") as log:
            subprocess.run([*self._java, "kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id()}",
                            "-c", str(properties)], stdout=log, stderr=subprocess.STDOUT, check=True,
                           timeout=120)
        self._properties = properties
        self.start()
        return self

    def start(self) -> None:
        """Start (again, after stop()) on the same ports and data, and wait until it listens."""
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen([*self._java, "kafka.Kafka", str(self._properties)],
                                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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


def _cluster_id() -> str:
    """A random cluster id in Kafka's form (a UUID's 16 bytes, URL-safe base64 without padding)."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
