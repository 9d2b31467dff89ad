"""Apache Kafka 4.x (KRaft, one node) at the first KAFKA_BOOTSTRAP_SERVERS address: a broker of our
own from the official jars (fetched with Maven), or a broker that already answers there (used as it
is, never stopped). Either way the service's topics are made to exist. Ours also has a SASL_SSL
listener on KAFKA_SASL_PORT, with SCRAM users and ACLs (devstack/kafka_security.py)."""

import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from config import Config, private_dir
from devstack import kafka_security
from devstack.install import check_java, kafka_jars
from devstack.kafka_configs import set_topic_configs
from devstack.output import Failure, failure_with_log, say, warn
from devstack.process import (
    alive,
    find,
    pid_of,
    port_open,
    rotate_log,
    run_logged,
    runs,
    start_detached,
    stop,
)
from devstack.settings import ROOT, Settings, is_local
from devstack.status import Status
from devstack.template import render

TEMPLATES = ROOT / "infra" / "kafka"
TOPIC_ALREADY_EXISTS = 36


class Kafka:
    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "kafka"
        self.data = self.dir / "data"
        self.props = self.dir / "server.properties"
        self.pid_file = self.dir / "kafka.pid"
        self.log = settings.logs / "kafka.log"
        self.host, self.port = settings.kafka_host, settings.kafka_port
        self.mode = ""  # what launch found: ours, external or new
        self.pid: int | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def our_pid(self) -> int | None:
        """Our broker's pid. The pid file is looked at first; without a live broker behind it (a
        run stopped between starting the JVM and writing the file), the broker is looked for by
        its command line, and the file rewritten."""
        ours = runs("kafka.Kafka", str(self.props))
        pid = pid_of(self.pid_file, ours)
        if pid is None:
            pid = find(ours)
            if pid is None:
                self.pid_file.unlink(missing_ok=True)
            else:
                self.pid_file.write_text(f"{pid}\n")
        return pid

    # --- the service interface -------------------------------------------------------------------

    def prepare(self) -> None:
        private_dir(self.dir)
        if self.settings.downloads == self.settings.home:
            private_dir(self.settings.downloads / "m2")

    def launch(self) -> None:
        self.pid = self.our_pid()
        if self.pid:
            running_port = self._configured_port()
            if running_port != self.port:
                raise Failure(f"our Kafka (pid {self.pid}) listens on port {running_port}, but "
                              f"KAFKA_BOOTSTRAP_SERVERS says {self.port}: run 'make infra-down' first")
            self.mode = "ours"
            return
        if port_open(self.host, self.port):
            self.mode = "external"
            return
        if not is_local(self.host):
            raise Failure(f"nothing answers at {self.address} (KAFKA_BOOTSTRAP_SERVERS) and it is not this "
                          "machine, so no broker can be started there")
        ports = ((self.settings.kafka_controller_port, "controller", "KAFKA_CONTROLLER_PORT"),
                 (self.settings.kafka_sasl_port, "SASL_SSL", "KAFKA_SASL_PORT"))
        for port, name, variable in ports:
            if port_open("127.0.0.1", port):
                raise Failure(f"Kafka's {name} port 127.0.0.1:{port} is taken by another program; "
                              f"stop it or set {variable}")
        self._start()

    def ready(self) -> None:
        if self.mode == "external":
            if not self._ensure_topics(15, grow=False):
                raise Failure(f"something that this script did not start answers at {self.address}, but it "
                              "does not work as a Kafka broker; stop it or set KAFKA_BOOTSTRAP_SERVERS")
            say(f"Kafka: using the broker already at {self.address} (not started by this script)")
            return
        self._wait_ready()
        self._secure()
        state = "already running" if self.mode == "ours" else "up"
        say(f"Kafka: {state} at {self.address} (ours, pid {self.pid})")

    def down(self) -> None:
        stop("Kafka", self.our_pid(), signal.SIGTERM, 30, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def status(self) -> Status:
        pid = self.our_pid()
        files = f"data {self.data}  log {self.log}"
        if pid:
            return Status("up" if port_open(self.host, self.port) else "starting", self.address,
                          f"ours, pid {pid}", files)
        if port_open(self.host, self.port):
            return Status("up", self.address, "external, not started by this script")
        return Status("down", self.address, "-", files)

    # --- starting ---------------------------------------------------------------------------------

    def _configured_port(self) -> int | None:
        for line in self.props.read_text().splitlines():
            if line.startswith("listeners=PLAINTEXT://"):
                return int(line.split(",")[0].rsplit(":", 1)[1])
        return None

    def libs(self) -> Path:
        return kafka_jars(TEMPLATES / "pom.xml", self.settings.downloads, self.settings.logs)

    def _java(self, libs: Path, *args: str) -> list[str]:
        return ["java", "-cp", f"{libs}/*", *args]

    def _start(self) -> None:
        check_java()
        libs = self.libs()
        self.render_config()
        rotate_log(self.log)
        self.format_storage(libs)
        say(f"Kafka: starting at 127.0.0.1:{self.port} (controller :{self.settings.kafka_controller_port}, "
            f"data {self.data})")
        self.pid = start_detached(self.command(libs), self.log)
        self.pid_file.write_text(f"{self.pid}\n")
        self.mode = "new"

    def command(self, libs: Path, heap: tuple[str, ...] = ("-Xms256m", "-Xmx512m")) -> list[str]:
        """The broker's command line (also the tests' private brokers', with a smaller heap)."""
        return ["java", *heap, "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}", "-cp", f"{libs}/*",
                "kafka.Kafka", str(self.props)]

    def render_config(self) -> None:
        from app.ingest.dead_letters import MAX_SOURCE_RECORD_BYTES

        key_store = kafka_security.broker_key_store(self.dir, self.settings.ca_dir,
                                                    ["127.0.0.1", "localhost"])
        self.props.write_text(render((TEMPLATES / "server.properties").read_text(), {
            "KAFKA_PORT": str(self.port),
            "KAFKA_SASL_PORT": str(self.settings.kafka_sasl_port),
            "KAFKA_SSL_KEYSTORE": str(key_store),
            "KAFKA_CONTROLLER_PORT": str(self.settings.kafka_controller_port),
            "KAFKA_DATA_DIR": str(self.data),
            "KAFKA_TOPIC_PARTITIONS": str(self.settings.partitions),
            "MAX_SOURCE_RECORD_BYTES": str(MAX_SOURCE_RECORD_BYTES),
        }))
        # A copy, so that the running broker does not depend on the clone that started it.
        (self.dir / "log4j2.properties").write_text((TEMPLATES / "log4j2.properties").read_text())

    def format_storage(self, libs: Path) -> None:
        """The storage tool writes meta.properties last, so a data dir without it was never usable
        and is formatted again, unless it holds log segments. A formatted dir is the truth about the
        cluster id."""
        id_file = self.dir / "cluster.id"
        meta = self.data / "meta.properties"
        if meta.exists():
            found = next(line.split("=", 1)[1] for line in meta.read_text().splitlines()
                         if line.startswith("cluster.id="))
            if not id_file.exists() or id_file.read_text().strip() != found:
                id_file.write_text(found + "\n")
            return
        if not id_file.exists() or not id_file.read_text().strip():
            made = subprocess.run(self._java(libs, "kafka.tools.StorageTool", "random-uuid"),
                                  capture_output=True, text=True, check=True)
            id_file.write_text(made.stdout.strip() + "\n")
        # Never delete a directory that holds a cluster's log segments, whatever else is missing.
        if self.data.is_dir() and next(self.data.rglob("*.log"), None):
            raise Failure(
                f"{self.data} holds Kafka log segments but no meta.properties, so it is left alone. If its "
                "records matter, restore its meta.properties (from a backup, or with the cluster id of its "
                f"__cluster_metadata log); otherwise move it away (mv '{self.data}' '{self.data}.old') "
                "and retry.")
        cluster_id = id_file.read_text().strip()
        say(f"Kafka: formatting storage in {self.data} (cluster id {cluster_id})")
        shutil.rmtree(self.data, ignore_errors=True)
        if not run_logged(self._java(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                                     "-c", str(self.props)), self.log):
            raise failure_with_log("formatting Kafka storage failed", self.log)
        os.chmod(self.data, 0o700)

    def _wait_ready(self) -> None:
        """"The port is open" is not "the broker is ready" right after a start: ready means the
        topics could be made."""
        deadline = time.monotonic() + 60
        while not port_open(self.host, self.port):
            if not alive(self.pid):
                self.pid_file.unlink(missing_ok=True)
                raise failure_with_log("Kafka exited while starting", self.log)
            if time.monotonic() >= deadline:
                raise Failure(f"Kafka did not start within 60 s; read {self.log}")
            time.sleep(0.25)
        if not self._ensure_topics(max(1.0, deadline - time.monotonic()), grow=True):
            raise Failure(f"Kafka did not start within 60 s; read {self.log}")

    def _secure(self) -> None:
        """The SASL_SSL listener's users, ACLs and client settings (idempotent). A broker of ours
        started before the listener existed is left as it is, with a word on how to get it."""
        from app.kafka_clients import KafkaSettings, new_admin

        if "SASL_SSL://" not in self.props.read_text():
            warn(f"Kafka: ours was started without the SASL_SSL listener; to get it (port "
                 f"{self.settings.kafka_sasl_port}), run 'make infra-down' and 'make infra'")
            return
        sasl_address = f"127.0.0.1:{self.settings.kafka_sasl_port}"
        # Over the loopback PLAINTEXT listener, whose anonymous principal is the broker's super user.
        admin = new_admin(KafkaSettings(self.address), client_id="order-service-infra",
                          request_timeout_ms=10000)
        try:
            done = kafka_security.set_up_users(admin, self.dir, sasl_address, self.settings.ca_dir / "ca.crt",
                                               self.settings.topic, self.settings.dlq_topic,
                                               self.settings.group_id)
            for line in done:
                say(f"Kafka: {line}")
        finally:
            admin.close()
        say(f"Kafka: SASL_SSL ({kafka_security.SASL_MECHANISM}) at {sasl_address}; the service's settings: "
            f"{self.dir / 'client-sasl.env'}")

    # --- the topics -------------------------------------------------------------------------------

    def _ensure_topics(self, seconds: float, grow: bool) -> bool:
        """Create the service's topics if missing, give the dead-letter topic its size limit, and
        check the partitions, retrying until `seconds` have passed. On our broker a topic with too
        few partitions is grown (a client that connected first may have auto-created it); on
        someone else's that only earns a warning."""
        from app.kafka_clients import KafkaSettings, new_admin

        # kafka-python logs every refused connection while we retry.
        logging.getLogger("kafka").setLevel(logging.CRITICAL + 1)
        settings = KafkaSettings.from_config(vars(Config)).with_bootstrap(self.address)
        deadline = time.monotonic() + seconds
        while True:
            admin = None
            try:
                admin = new_admin(settings, client_id="order-service-infra", request_timeout_ms=10000)
                self._make_topics(admin, grow)
                return True
            except Exception as exc:  # noqa: BLE001 - any failure before the deadline means "not ready yet"
                if time.monotonic() >= deadline:
                    warn(f"last error: {type(exc).__name__}: {exc}")
                    return False
                time.sleep(0.5)
            finally:
                if admin is not None:
                    admin.close()

    def _make_topics(self, admin, grow: bool) -> None:
        from kafka.admin import NewPartitions, NewTopic

        from app.ingest.dead_letters import MAX_DEAD_LETTER_BYTES, MAX_SOURCE_RECORD_BYTES

        topic, dlq, partitions = self.settings.topic, self.settings.dlq_topic, self.settings.partitions
        # A dead letter is a source record plus the dlq.* headers, so its topic takes larger records.
        limits = {topic: MAX_SOURCE_RECORD_BYTES, dlq: MAX_DEAD_LETTER_BYTES}
        missing = [name for name in (topic, dlq) if name not in set(admin.list_topics())]
        if missing:
            _check(admin.create_topics([
                NewTopic(name, num_partitions=partitions, replication_factor=1,
                         topic_configs={"max.message.bytes": str(limits[name])}) for name in missing
            ], timeout_ms=10000), "creating topic")
            say(f"Kafka: created topics {', '.join(missing)} ({partitions} partitions)")
        # A dead-letter topic made before its limit was raised gets the new one; its other settings
        # stay as they are (incremental, not the alter_configs that resets them).
        set_topic_configs(admin, dlq, {"max.message.bytes": str(limits[dlq])})
        for described in admin.describe_topics([topic, dlq]):
            if described["error_code"] != 0:
                raise RuntimeError(f"topic {described['topic']}: error {described['error_code']}")
            have = len(described["partitions"])
            if have >= partitions:
                continue
            if grow:
                _check(admin.create_partitions({described["topic"]: NewPartitions(partitions)},
                                               timeout_ms=10000), "adding partitions to")
                say(f"Kafka: topic {described['topic']} had {have} partition(s), now {partitions}")
            else:
                warn(f"topic {described['topic']} has {have} partition(s), "
                     f"KAFKA_TOPIC_PARTITIONS={partitions}")


def _check(response, what: str) -> None:
    for topic, code, *message in response.topic_errors:
        if code not in (0, TOPIC_ALREADY_EXISTS):
            raise RuntimeError(f"{what} {topic}: error {code} {message}")

