"""The real service under gunicorn, with consumers in its workers, against the real Kafka and
PostgreSQL: crashes, graceful stops and several instances in one group lose nothing."""

import json
import os
import signal
import time

import pytest

from app.documents import served_form
from app.seed import OrderFactory, encode
from tests.helpers import (
    BackgroundStream,
    all_committed,
    committed_offsets,
    produce,
    read_all,
    stored_uids,
    wait_until,
)
from tests.service import Service, service_env

pytestmark = pytest.mark.slow


@pytest.fixture
def services(tmp_path):
    started: list[Service] = []

    def start(env: dict[str, str], name: str = "service") -> Service:
        started.append(Service(env, tmp_path / f"{name}-{len(started)}.log").start())
        return started[-1]

    yield start
    for service in started:
        service.kill()


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
        # Written through by whichever worker consumed it; the other reads it from PostgreSQL.
        assert headers["X-Order-Source"] in {"cache", "database"}
    wait_until(lambda: service.get("/readyz")[0] == 200, 30, "both workers report ready")
    metrics = service.get("/metrics")[2].decode()
    # Both workers' counters, added up by the multiprocess collector.
    assert 'orders_consumed_total{result="stored"} 200.0' in metrics
    assert "ingest_batch_duration_seconds_count" in metrics
    assert 'orders_consumer_lag{partition="0"} 0.0' in metrics
    assert "orders_consumer_partitions 6.0" in metrics


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
    uids = stored_uids(ingest_app)
    assert len(uids) == len(set(uids)) == len(orders)
    assert set(uids) == {o["order_uid"] for o in orders}
    assert read_all(topics.bootstrap, topics.dlq) == []


def test_sigterm_stops_gracefully_and_a_restart_goes_on(ingest_app, topics, database_url, services):
    env = service_env(database_url, topics, GUNICORN_GRACEFUL_TIMEOUT="20")
    service = services(env)
    orders, stream = stream_orders(topics, 6000, seed=33)
    wait_until(lambda: len(stored_uids(ingest_app)) > 0, 60, "ingest is under way")
    started = time.monotonic()
    service.signal(signal.SIGTERM)
    assert stream.thread.is_alive(), "the stop must come in the middle of the stream"
    assert service.wait_exit(timeout_s=20) == 0
    assert time.monotonic() - started < 20
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
    wait_until(lambda: "partitions assigned" in service.log(), 30, "the consumers joined the group")
    service.signal(signal.SIGINT)
    assert service.wait_exit(timeout_s=15) == 0


def test_two_instances_split_the_partitions_and_store_everything_once(
    ingest_app, topics, database_url, services
):
    env = service_env(database_url, topics, WEB_CONCURRENCY="1")
    first = services(env, name="first")
    second = services(env, name="second")
    wait_until(lambda: "partitions assigned: ['" in first.log() and "partitions assigned: ['" in second.log()
               and _assignment_settled(first, second), 60, "both instances own partitions")
    orders = produce_orders(topics, 3000, seed=34)
    wait_until(lambda: all_committed(topics), 120, "the two instances consumed the topic")
    uids = stored_uids(ingest_app)
    assert len(uids) == len(set(uids)) == len(orders)


def _assignment_settled(*services: Service) -> bool:
    """Both instances' latest assignments are non-empty and together cover all 6 partitions."""
    owned = []
    for service in services:
        lines = [line for line in service.log().splitlines() if "partitions assigned" in line]
        latest = lines[-1].split("partitions assigned: ")[1] if lines else "[]"
        owned.append(set(json.loads(latest.replace("'", '"'))))
    return all(owned) and len(set().union(*owned)) == 6 and not set.intersection(*owned)


def test_a_worker_that_boots_while_kafka_is_down_still_serves(ingest_app, topics, database_url, services):
    env = service_env(database_url, topics, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    service = services(env)
    wait_until(lambda: service.log().count("Connect attempt to") >= 2, 30,
               "both workers' consumers tried to reach Kafka")
    assert service.get("/healthz")[0] == 200
    assert service.get("/order/unknown-id")[0] == 404
    assert len(service.worker_pids()) == 2
    service.signal(signal.SIGTERM)
    assert service.wait_exit(timeout_s=30) == 0


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
    from tests.test_ingest import database_outage

    env = service_env(database_url, topics)
    first = services(env, name="first")
    wait_until(lambda: first.get("/readyz")[2].count(b'"in group"'), 30, "a consumer of the first joined")
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
