"""The real service under gunicorn, with consumers in its workers, against the real Kafka and
PostgreSQL: crashes, graceful stops and several instances in one group lose nothing."""

import itertools
import json
import os
import re
import signal
import socket

import pytest

from app.documents import served_form
from app.seed import OrderFactory, encode
from harness.kafka import BackgroundStream, all_committed, committed_offsets, produce, read_all
from harness.postgres import database_outage
from harness.service import Service, service_env
from harness.waiting import wait_until
from tests.helpers import metric, stored_uids

pytestmark = pytest.mark.slow


def stream_orders(topics, count: int, seed: int,
                  per_second: float = 1500) -> tuple[list[dict], BackgroundStream]:
    """Orders produced as a paced stream in the background, so a test can act in its middle."""
    orders = list(OrderFactory(seed=seed).orders(count))
    records = [(o["order_uid"].encode(), encode(o)) for o in orders]
    return orders, BackgroundStream(topics.bootstrap, topics.orders, records, per_second)


def produce_orders(topics, count: int, seed: int) -> list[dict]:
    orders = list(OrderFactory(seed=seed).orders(count))
    produce(topics.bootstrap, topics.orders, [(o["order_uid"].encode(), encode(o)) for o in orders])
    return orders


def test_orders_flow_from_kafka_to_http(ingest_app, topics, database_url, services):
    orders = produce_orders(topics, 200, seed=31)
    service = services(service_env(database_url, topics))
    wait_until(lambda: all_committed(topics), 60, "the service consumed the topic")
    for order in orders[:20]:
        status, headers, body = service.get(f"/order/{order['order_uid']}")
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert json.loads(body) == served_form(order)
    wait_until(lambda: service.get("/readyz")[0] == 200, 30, "both workers report ready")
    # Both workers' counters, added up by the multiprocess collector; a batch is counted just
    # after its commit.
    wait_until(lambda: metrics_of(service, "orders_consumed_total", result="stored") >= 200, 10,
               "every stored order was counted")
    metrics = service.get("/metrics")[2].decode()
    assert metric(metrics, "orders_consumed_total", result="stored") == 200
    assert metric(metrics, "ingest_batch_duration_seconds_count") > 0
    assert metric(metrics, "orders_consumer_lag", partition="0") == 0
    assert metric(metrics, "orders_consumer_partitions") == 6


def test_a_consumed_order_is_served_from_the_cache_and_another_from_postgresql_once(
        ingest_app, topics, database_url, services):
    """One worker, so that every answer comes from the worker whose consumer stored the orders:
    those are written through to its cache; an order stored by someone else is read from
    PostgreSQL once, then kept."""
    from tests.helpers import save

    orders = produce_orders(topics, 20, seed=35)
    service = services(service_env(database_url, topics, WEB_CONCURRENCY="1"))
    wait_until(lambda: all_committed(topics), 60, "the service consumed the topic")
    sources = [service.get(f"/order/{order['order_uid']}")[1]["X-Order-Source"] for order in orders]
    assert sources == ["cache"] * len(orders)
    elsewhere = next(OrderFactory(seed=36).orders(1))
    save(ingest_app, [elsewhere])
    answers = [service.get(f"/order/{elsewhere['order_uid']}") for _ in range(2)]
    assert [(status, headers["X-Order-Source"]) for status, headers, _ in answers] == [
        (200, "database"), (200, "cache")]


def test_a_killed_worker_loses_nothing(ingest_app, topics, database_url, services):
    service = services(service_env(database_url, topics))
    orders, stream = stream_orders(topics, 6000, seed=32)
    wait_until(lambda: len(stored_uids(ingest_app)) > 0, 60, "ingest is under way")
    victim = service.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    assert stream.thread.is_alive(), "the worker must die in the middle of the stream"
    wait_until(lambda: victim not in service.worker_pids() and len(service.worker_pids()) == 2, 30,
               "the master replaced the killed worker")
    stream.join()
    wait_until(lambda: all_committed(topics), 120, "the service consumed the whole topic")
    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders)
    assert read_all(topics.bootstrap, topics.dlq) == []


def test_sigterm_stops_gracefully_and_a_restart_goes_on(ingest_app, topics, database_url, services):
    env = service_env(database_url, topics, GUNICORN_GRACEFUL_TIMEOUT="20")
    service = services(env)
    orders, stream = stream_orders(topics, 6000, seed=33)
    wait_until(lambda: len(stored_uids(ingest_app)) > 0, 60, "ingest is under way")
    service.signal(signal.SIGTERM)
    assert stream.thread.is_alive(), "the stop must come in the middle of the stream"
    # Within the graceful timeout (wait_exit raises otherwise), and cleanly.
    assert service.wait_exit(timeout_s=20) == 0
    stream.join()
    # Nothing was committed that is not stored. (Committed can trail stored: when both workers
    # leave at once, the first one's departure starts a rebalance that can refuse the other's last
    # commit; those records are redelivered and found to be duplicates.)
    stored_at_stop = len(stored_uids(ingest_app))
    committed = sum(committed_offsets(topics.bootstrap, topics.group, topics.orders).values())
    assert committed <= stored_at_stop
    assert "consumer did not stop" not in service.log()

    services(env, name="restarted")
    wait_until(lambda: all_committed(topics), 120, "the restarted service consumed the rest")
    uids = stored_uids(ingest_app)
    assert sorted(uids) == sorted(o["order_uid"] for o in orders)
    assert read_all(topics.bootstrap, topics.dlq) == []


def test_sigint_is_a_quick_clean_stop(ingest_app, topics, database_url, services):
    service = services(service_env(database_url, topics))
    seen: set[frozenset[int]] = set()
    wait_until(lambda: both_workers_consume(service, seen, topics.partitions), 60,
               "both workers' consumers joined the group and share the partitions")
    service.signal(signal.SIGINT)
    assert service.wait_exit(timeout_s=15) == 0


def test_a_sigterm_with_idle_keep_alive_connections_open_stops_at_once(topics, database_url, tmp_path):
    """Clients keep connections open between requests: the edge (4 s idle), a scraper of /metrics
    or a health checker (often longer). gunicorn 24's threaded worker, once stopping, slept until
    the next event on any of its sockets, so an idle connection kept it for the whole graceful
    timeout; a stop must only give such connections a moment for a request already on its way."""
    service = Service(service_env(database_url, topics, GUNICORN_GRACEFUL_TIMEOUT="60"),
                      tmp_path / "keepalive.log").start()
    try:
        idle = [socket.create_connection(("127.0.0.1", service.port), timeout=5) for _ in range(8)]
        for connection in idle:  # one answered request each, then the connection stays open
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: order-service\r\n\r\n")
            assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        service.signal(signal.SIGTERM)
        assert service.wait_exit(timeout_s=15) == 0, "the stop waited for idle connections"
        for connection in idle:
            connection.close()
    finally:
        service.kill()


def test_a_sigterm_writes_every_access_line_still_held(topics, database_url, tmp_path):
    """The workers write their access lines in batches (ACCESS_LOG_FLUSH_MS); a stop writes what
    they still hold, so a graceful stop loses no line."""
    service = Service(service_env(database_url, topics, ACCESS_LOG_FLUSH_MS="10000"),
                      tmp_path / "access.log").start()
    try:
        sent = [f"held-{n}-{os.getpid()}" for n in range(20)]
        for request_id in sent:
            assert service.get("/healthz", {"X-Request-ID": request_id})[0] == 200
        assert not any(f"request_id={request_id}" in service.log() for request_id in sent), \
            "written before the flush interval or the stop: the test would show nothing"
        service.signal(signal.SIGTERM)
        assert service.wait_exit(timeout_s=30) == 0
        log = service.log()
        assert [request_id for request_id in sent if f"request_id={request_id}\n" not in log] == []
    finally:
        service.kill()


def test_a_sigterm_while_the_workers_boot_is_a_clean_stop(topics, database_url, tmp_path):
    """A stop that comes while the workers are still starting (a deploy right after a restart) is
    not lost: before the fix, gunicorn's worker had no handler yet, and the master waited its whole
    graceful timeout before killing the worker."""
    service = Service(service_env(database_url, topics, GUNICORN_GRACEFUL_TIMEOUT="60"),
                      tmp_path / "boot.log").launch()
    try:
        service.wait_for_workers(2)
        service.signal(signal.SIGTERM)
        assert service.wait_exit(timeout_s=50) == 0
        assert "SIGKILL" not in service.log(), "the master had to kill a worker that missed the stop"
    finally:
        service.kill()


def test_two_instances_split_the_partitions_and_store_everything_once(
    ingest_app, topics, database_url, services
):
    env = service_env(database_url, topics, WEB_CONCURRENCY="1")
    first = services(env, name="first")
    second = services(env, name="second")
    # One worker each: each instance's /readyz shows its only consumer.
    wait_until(lambda: split_between(topics.partitions, first, second), 60,
               "each instance owns a share of the partitions, together all")
    orders = produce_orders(topics, 3000, seed=34)
    wait_until(lambda: all_committed(topics), 120, "the two instances consumed the topic")
    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders)

    def stored_by(service: Service) -> float:
        return metrics_of(service, "orders_consumed_total", result="stored")

    # A batch is counted just after its commit.
    wait_until(lambda: stored_by(first) + stored_by(second) >= len(orders), 10, "every order was counted")
    assert stored_by(first) + stored_by(second) == len(orders), "an order was stored twice"
    assert stored_by(first) > 0 and stored_by(second) > 0


def consumer_status(service: Service) -> dict | None:
    """What /readyz says of the consumer of whichever worker answered; None if none answered."""
    status, _, body = service.get("/readyz")
    return json.loads(body)["consumer"] if status in (200, 503) else None


def metrics_of(service: Service, name: str, **labels: str) -> float:
    return metric(service.get("/metrics")[2].decode(), name, **labels)


def split_between(partitions: int, *services: Service) -> bool:
    """Each service's consumer is in the group with partitions of its own, and together they own
    all of them (for services of one worker each)."""
    owned = []
    for service in services:
        consumer = consumer_status(service)
        if not consumer or consumer["state"] != "in group" or not consumer["partitions"]:
            return False
        owned.append(set(consumer["partitions"]))
    return sum(map(len, owned)) == partitions and set().union(*owned) == set(range(partitions))


def both_workers_consume(service: Service, seen: set[frozenset[int]], partitions: int) -> bool:
    """/readyz is answered by one worker at a time, so each call adds what the answering worker's
    consumer owns to `seen`: true once two workers have been seen owning disjoint shares that
    together are all the partitions, and /metrics (every worker added up) agrees."""
    consumer = consumer_status(service)
    if consumer and consumer["state"] == "in group" and consumer["partitions"]:
        seen.add(frozenset(consumer["partitions"]))
    everything = frozenset(range(partitions))
    shared = any(not a & b and a | b == everything for a, b in itertools.combinations(seen, 2))
    return shared and metrics_of(service, "orders_consumer_partitions") == partitions


def test_a_worker_that_boots_while_kafka_is_down_still_serves(ingest_app, topics, database_url, services):
    env = service_env(database_url, topics, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    service = services(env)
    # Every worker has loaded the app and its consumer is trying Kafka. Only the log tells the
    # workers apart here (their /readyz answers are alike), and a SIGTERM that reaches a worker
    # still in gunicorn's post_fork hook is lost, so the stop below waits for this.
    wait_until(lambda: every_worker_tried_kafka(service), 30, "every worker's consumer tried to reach Kafka")
    status, _, body = service.get("/readyz")
    assert json.loads(body)["consumer"]["state"] == "waiting for Kafka"
    assert status == 200 and json.loads(body)["checks"]["kafka"]["ok"] is False
    assert service.get("/healthz")[0] == 200
    assert service.get("/order/unknown-id")[0] == 404
    assert len(service.worker_pids()) == 2
    service.signal(signal.SIGTERM)
    assert service.wait_exit(timeout_s=30) == 0


def every_worker_tried_kafka(service: Service) -> bool:
    """Each worker's consumer logged a connection attempt to Kafka (lines name the process)."""
    workers = set(service.worker_pids())
    tried = re.findall(r"\[(\d+) order-consumer\] kafka\.conn: Connect attempt", service.log())
    return bool(workers) and workers <= {int(pid) for pid in tried}


class ReadinessProbe:
    """Polls /readyz on a service every 100 ms on a thread, as a load balancer would."""

    def __init__(self, service: Service) -> None:
        import threading

        self.service = service
        self.answers: list[tuple[int, dict]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="readyz-probe")
        self.thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.1):
            status, _, body = self.service.get("/readyz")
            self.answers.append((status, json.loads(body) if status else {}))

    def stop(self) -> list[tuple[int, dict]]:
        self._stop.set()
        self.thread.join(timeout=10)
        return self.answers


def test_readiness_holds_through_rebalances_and_fails_without_postgresql(
    ingest_app, topics, database_url, services
):
    env = service_env(database_url, topics)
    first = services(env, name="first")
    wait_until(lambda: (consumer_status(first) or {}).get("state") == "in group", 30,
               "a consumer of the first joined")
    first_probe = ReadinessProbe(first)
    second = services(env, name="second")  # two more members: the group rebalances
    second_probe = ReadinessProbe(second)

    def partitions_seen_by_first() -> set[int]:
        return {len(body["consumer"].get("partitions", [])) for _, body in first_probe.answers[-10:]}

    wait_until(lambda: partitions_seen_by_first() & {1, 2}, 60,
               "the first instance's workers gave partitions to the second's")
    second.signal(signal.SIGTERM)  # two members leave: another rebalance
    assert second.wait_exit(timeout_s=30) == 0
    answered_by_second = second_probe.stop()
    wait_until(lambda: partitions_seen_by_first() & {3, 4, 5, 6}, 60, "the first took its partitions back")
    answered_by_first = first_probe.stop()

    assert [status for status, _ in answered_by_first] == [200] * len(answered_by_first)
    # The second answered until its stop; after that, only refused connections (status 0).
    assert {status for status, _ in answered_by_second} <= {200, 0}
    assert answered_by_second[0][0] == 200
    with database_outage(database_url):
        wait_until(lambda: first.get("/readyz")[0] == 503, 30, "/readyz says not ready without PostgreSQL")
    wait_until(lambda: first.get("/readyz")[0] == 200, 30, "/readyz is ready again once PostgreSQL is back")


def test_connections_spread_over_both_workers(topics, database_url, services):
    """Each worker listens on its own socket (SO_REUSEPORT): 64 keep-alive clients that arrive at
    once are spread by the kernel. With one shared socket, whichever worker was on a core took
    them all and the other stayed idle (bench/README.md)."""
    service = services(service_env(database_url, topics, CONSUMER_ENABLED="false"))
    clients = []
    try:
        for _ in range(64):
            client = socket.create_connection(("127.0.0.1", service.port), timeout=10)
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(client)
        for client in clients:
            assert client.recv(4096).startswith(b"HTTP/1.1 200")

        counts = service.connections_per_worker()
        # Binomial(64, 1/2) is below 16 once in 10^5 runs.
        assert sum(counts) == 64 and counts[0] >= 16, counts
    finally:
        for client in clients:
            client.close()


def test_the_date_header_is_the_time_of_the_answer_and_moves_on_over_one_connection(
        topics, database_url, services):
    """gunicorn's Date is formatted once a second (app/speedups.py): each answer's must still
    be its own second, and a keep-alive connection must see it change."""
    import http.client
    import time
    from email.utils import parsedate_to_datetime

    service = services(service_env(database_url, topics, CONSUMER_ENABLED="false"))
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    seen: set[str] = set()

    def answer_dated_within_its_request() -> bool:
        before = time.time()
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        after = time.time()
        date = response.getheader("Date")
        assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT", date), date
        assert int(before) <= parsedate_to_datetime(date).timestamp() <= after, (before, date, after)
        seen.add(date)
        return len(seen) >= 2

    try:
        wait_until(answer_dated_within_its_request, 5, "two seconds' dates on one connection")
    finally:
        connection.close()


def test_an_address_someone_else_holds_stops_gunicorn_with_one_line(database_url, topics, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        service = Service(service_env(database_url, topics, APP_BIND=address), tmp_path / "taken.log")
        service.launch()
        assert service.wait_exit(30) != 0
    refusal = f"APP_BIND={address} can't be used (Address already in use): another program holds it"
    assert refusal in service.log()
    assert "Booting worker" not in service.log()
