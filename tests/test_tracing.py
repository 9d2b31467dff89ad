"""Tracing with OpenTelemetry: the service under gunicorn exports its spans over OTLP/HTTP to a real
receiver started here; with no endpoint, nothing is installed or started."""

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from opentelemetry import trace

from app import create_app
from app.kafka_clients import new_producer
from app.seed import OrderFactory, encode
from config import TestConfig
from harness import ROOT
from harness.kafka import all_committed, read_all
from harness.kafka import settings as kafka_settings
from harness.otlp import OtlpReceiver, ReceivedSpan
from harness.service import Service, service_env
from harness.waiting import wait_until

OTEL_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED")


def traceparent() -> tuple[str, str, str]:
    """A fresh sampled W3C traceparent: (header, trace id, parent span id)."""
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def produce_with_headers(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, list]]) -> None:
    # Retried and awaited: a send racing a new topic's leader election must not vanish.
    producer = new_producer(kafka_settings(bootstrap), acks="all", retries=5)
    try:
        futures = [producer.send(topic, key=key, value=value, headers=headers)
                   for key, value, headers in records]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()


@pytest.fixture
def receiver():
    started = OtlpReceiver().start()
    yield started
    started.stop()


@pytest.fixture
def traced_service(ingest_app, topics, database_url, receiver, tmp_path, full_access):
    env = service_env(database_url, topics, WEB_CONCURRENCY="1", LOG_FORMAT="json",
                      OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100",
                      OTEL_SERVICE_NAME="order-service-under-test")
    env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
    service = Service(env, tmp_path / "service.log", credentials=full_access).start()
    yield service
    service.kill()


def batch_linked_to(receiver: OtlpReceiver, trace_id: str, span_id: str) -> ReceivedSpan | None:
    for span in receiver.spans():
        if span.kind == "SPAN_KIND_CONSUMER" and any(
            link.trace_id == trace_id and link.span_id == span_id for link in span.links
        ):
            return span
    return None


def child_named(receiver: OtlpReceiver, parent: ReceivedSpan, name: str) -> ReceivedSpan | None:
    return next((span for span in receiver.children_of(parent) if span.name == name), None)


@pytest.mark.slow
def test_a_traced_record_is_linked_from_its_batch_with_its_steps_and_database_spans(
        traced_service, topics, receiver):
    order = next(OrderFactory(seed=71).orders(1))
    valid_header, valid_trace, valid_parent = traceparent()
    invalid_header, invalid_trace, invalid_parent = traceparent()
    produce_with_headers(topics.bootstrap, topics.orders, [
        (order["order_uid"].encode(), encode(order), [("traceparent", valid_header.encode())]),
        (b"not-an-order", b"{not json", [("traceparent", invalid_header.encode())]),
    ])
    wait_until(lambda: all_committed(topics), 60, "the service consumed both records")

    batch = wait_until(lambda: batch_linked_to(receiver, valid_trace, valid_parent), 30,
                       "a batch span linked to the valid record's traceparent arrived")
    assert batch.resource["service.name"] == "order-service-under-test"
    assert batch.attributes["messaging.system"] == "kafka"
    assert batch.attributes["messaging.destination.name"] == topics.orders
    # The batch is a trace of its own, linked to (not a child of) the producer's.
    assert batch.trace_id != valid_trace
    for step in ("decode and validate", "store", "commit", "cache"):
        wait_until(lambda step=step: child_named(receiver, batch, step), 30, f"the batch's {step} span")
    store = child_named(receiver, batch, "store")
    statements = wait_until(
        lambda: [span.attributes.get("db.statement") or span.attributes.get("db.query.text", "")
                 for span in receiver.children_of(store)], 30, "database spans under the store span")
    # execute_values hands psycopg2 its statement as bytes, and the instrumentation passes them on.
    texts = [statement.decode() if isinstance(statement, bytes) else statement for statement in statements]
    # The orders are written by one INSERT … SELECT from the COPY'd rows (COPY itself is not a
    # statement the psycopg2 instrumentation traces).
    assert any(text.startswith("INSERT INTO orders ") for text in texts), texts
    assert all(span.attributes.get("db.system") == "postgresql" or
               span.attributes.get("db.system.name") == "postgresql"
               for span in receiver.children_of(store))

    rejected_batch = wait_until(lambda: batch_linked_to(receiver, invalid_trace, invalid_parent), 30,
                                "a batch span linked to the invalid record's traceparent arrived")
    wait_until(lambda: child_named(receiver, rejected_batch, "dead-letter"), 30, "the dead-letter span")
    dead_letters = read_all(topics.bootstrap, topics.dlq)
    assert [dict(letter.headers).get("traceparent") for letter in dead_letters] == [invalid_header.encode()]


@pytest.mark.slow
def test_a_request_gets_a_server_span_with_its_request_id(traced_service, topics, receiver):
    order = next(OrderFactory(seed=72).orders(1))
    produce_with_headers(topics.bootstrap, topics.orders,
                         [(order["order_uid"].encode(), encode(order), [])])
    wait_until(lambda: all_committed(topics), 60, "the service consumed the order")

    # One worker: it consumed the order, so this is a cache hit, answered before Flask.
    status, headers, _ = traced_service.get(f"/order/{order['order_uid']}",
                                            {"X-Request-ID": "trace-test-hit"})
    assert (status, headers["X-Order-Source"]) == (200, "cache")
    # An unknown id goes through Flask and PostgreSQL.
    status, _, _ = traced_service.get("/order/no-such-order", {"X-Request-ID": "trace-test-miss"})
    assert status == 404

    def server_span(request_id: str) -> ReceivedSpan | None:
        return next((span for span in receiver.spans() if span.kind == "SPAN_KIND_SERVER"
                     and span.attributes.get("http.request.header.x-request-id") == [request_id]), None)

    hit = wait_until(lambda: server_span("trace-test-hit"), 30, "the cache hit's server span")
    assert hit.name == f"GET /order/{order['order_uid']}"
    miss = wait_until(lambda: server_span("trace-test-miss"), 30, "the miss's server span")
    assert miss.name == "GET /order/<path:order_uid>"
    assert miss.attributes["http.route"] == "/order/<path:order_uid>"
    wait_until(lambda: receiver.children_of(miss), 30, "the miss's database span under its server span")

    # LOG_FORMAT=json: the access line is one JSON object with the request's id and its trace.
    def access_line() -> dict | None:
        for line in traced_service.log().splitlines():
            if line.startswith("{") and '"trace-test-hit"' in line and '"order_service.access"' in line:
                return json.loads(line)
        return None

    entry = wait_until(access_line, 10, "the hit's access line in the log")
    assert entry["logger"] == "order_service.access" and entry["level"] == "INFO"
    assert (entry["request_id"], entry["trace_id"], entry["span_id"]) == ("trace-test-hit", hit.trace_id,
                                                                          hit.span_id)
    # The read's audit line, with its fields as keys of the same JSON shape and the same request id.
    audit = next(json.loads(line) for line in traced_service.log().splitlines()
                 if line.startswith("{") and '"trace-test-hit"' in line and '"order_service.audit"' in line)
    assert (audit["event"], audit["order_uid"], audit["masked"]) == ("order_read", order["order_uid"], False)
    assert entry["message"].endswith(f'"GET /order/{order["order_uid"]}" 200')


def test_without_an_endpoint_nothing_is_installed_or_started(monkeypatch, database_url, authorize):
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    from app.tracing import start_tracing

    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = set(threading.enumerate())
    app = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url})
    assert start_tracing() is False
    response = authorize(app.test_client()).get("/order/no-such-order")
    assert response.status_code == 404
    started = [thread.name for thread in set(threading.enumerate()) - before]
    assert not [name for name in started if "Otel" in name], started
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    layer, layers = app.wsgi_app, []
    while layer is not None:
        layers.append(type(layer))
        layer = getattr(layer, "wsgi_app", None) or getattr(layer, "app", None)
    assert OpenTelemetryMiddleware not in layers


def test_a_dead_letter_keeps_the_traceparent_with_tracing_off(monkeypatch, run_consumer, topics):
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    header, _, _ = traceparent()
    produce_with_headers(topics.bootstrap, topics.orders, [
        (b"a", b"[]", [("traceparent", header.encode())]),
        (b"b", b"[]", []),
    ])
    run_consumer()
    wait_until(lambda: all_committed(topics), 60, "the consumer handled both records")
    letters = {letter.key: dict(letter.headers) for letter in read_all(topics.bootstrap, topics.dlq)}
    assert letters[b"a"]["traceparent"] == header.encode()
    assert "traceparent" not in letters[b"b"]


def test_json_log_lines_carry_the_current_trace(caplog):
    from opentelemetry.sdk.trace import TracerProvider

    from app.logs import JsonFormatter

    record = logging.LogRecord("order_service.test", logging.WARNING, __file__, 1, "held %s", ("x\ny",), None)
    tracer = TracerProvider().get_tracer("test")  # a provider of the test's own, not the global one
    with tracer.start_as_current_span("work") as span:
        inside = json.loads(JsonFormatter().format(record))
    outside = json.loads(JsonFormatter().format(record))
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}" and inside["span_id"] == f"{context.span_id:016x}"
    assert (inside["level"], inside["logger"], inside["message"]) == ("WARNING", "order_service.test",
                                                                      "held x\ny")
    assert "time" in inside and "trace_id" not in outside and "request_id" not in outside


@pytest.mark.slow
def test_a_worker_flushes_its_spans_when_it_exits(ingest_app, topics, database_url, receiver, tmp_path):
    # A schedule delay far longer than the test: the spans can only come from the exit's flush.
    env = service_env(database_url, topics, WEB_CONCURRENCY="1",
                      OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="600000")
    service = Service(env, tmp_path / "service.log").start()
    try:
        assert service.get("/healthz", {"X-Request-ID": "trace-test-exit"})[0] == 200
        assert receiver.requests == 0
        assert service.stop() == 0
    finally:
        service.kill()
    assert any(span.attributes.get("http.request.header.x-request-id") == ["trace-test-exit"]
               for span in receiver.spans())


@pytest.mark.slow
def test_seed_orders_sends_the_traceparent_of_a_producer_span_per_record(topics, database_url, receiver):
    # A process of its own: the command installs a global tracer provider.
    env = {**os.environ, "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap,
           "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    subprocess.run([str(Path(sys.executable).with_name("flask")), "--app", "wsgi", "seed-orders",
                    "--count", "5", "--seed", "3", "--topic", topics.orders, "--quiet"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
    records = read_all(topics.bootstrap, topics.orders)
    headers = [dict(record.headers).get("traceparent", b"").decode() for record in records]
    assert len(headers) == 5 and all(header.startswith("00-") for header in headers), headers
    # The command flushed its spans before exiting: each header is one of its producer spans.
    sent = {f"00-{span.trace_id}-{span.span_id}" for span in receiver.spans()
            if span.kind == "SPAN_KIND_PRODUCER"}
    assert {header.rsplit("-", 1)[0] for header in headers} == sent
