"""The edge (nginx rendered from infra/nginx/nginx.conf.template) in front of the real service
under gunicorn, against the real PostgreSQL and Kafka: slow clients, the order cache, request ids,
refused requests and /metrics."""

import json
import re
import select
import time
import uuid

import pytest

from app.seed import OrderFactory, encode
from harness.edge import Edge, nginx_binary
from harness.kafka import all_committed, create_topics, delete_topics, produce
from harness.service import Service, free_port, service_env
from harness.slow_clients import slow_connections
from harness.waiting import wait_until
from tests.helpers import metric

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed: run `make infra`"),
]

CACHE_MISS_TTL = 2
# Short, so that the slow clients are cut off within the test's time.
CLIENT_TIMEOUT_S = 3
# 127.0.0.1 is outside it: the tests connect from 127.0.0.2 to be inside.
METRICS_ALLOW = "127.0.0.2"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, app, database_url, kafka_bootstrap, full_access):
    """gunicorn (consumers on, this module's topics; `app` migrates the database) with an edge
    in front of it."""
    work = tmp_path_factory.mktemp("edge")
    topics = create_topics(kafka_bootstrap)
    service = Service(service_env(database_url, topics, CACHE_MISS_TTL=str(CACHE_MISS_TTL)),
                      work / "service.log", credentials=full_access)
    edge = Edge(f"127.0.0.1:{service.port}", work, {
        "CACHE_MISS_TTL": str(CACHE_MISS_TTL),
        "EDGE_CLIENT_TIMEOUT_S": str(CLIENT_TIMEOUT_S),
        "METRICS_ALLOW": METRICS_ALLOW,
    }, credentials=full_access)
    try:
        service.start()
        edge.start()
        yield topics, service, edge
    finally:
        edge.stop()
        service.kill()
        delete_topics(topics)


def publish(topics, seed: int) -> dict:
    order = next(OrderFactory(seed=seed).orders(1))
    produce(topics.bootstrap, topics.orders, [(order["order_uid"].encode(), encode(order))])
    return order


def wait_consumed(topics) -> None:
    """Until the service has committed the topic (so it stored the order), without asking for
    the order: a worker would remember the miss."""
    wait_until(lambda: all_committed(topics), 60, "the service consumed the topic")


def requests_seen(service: Service, **labels: str) -> float:
    """Requests the app answered (with these labels), from its own /metrics, asked of gunicorn
    directly; the /metrics requests themselves left out."""
    text = service.get("/metrics")[2].decode()
    answered = metric(text, "http_request_duration_seconds_count", **labels)
    if "route" not in labels:
        answered -= metric(text, "http_request_duration_seconds_count", **labels, route="/metrics")
    return answered


def is_json_error(body: bytes) -> bool:
    document = json.loads(body)
    return set(document) == {"error", "message"} and all(isinstance(v, str) and v for v in document.values())


def test_slow_clients_are_held_by_the_edge_while_others_are_answered(stack):
    _, service, edge = stack
    answered_before = requests_seen(service, route="/healthz", method="GET", status="200")
    with slow_connections(edge.port, 500) as slow:
        # A normal client meanwhile: every request answered, each within 1 s.
        answers = []
        for _ in range(20):
            answers.append(edge.get("/healthz", timeout_s=1.0)[0])
            time.sleep(0.1)  # pacing the client, not waiting for anything
        assert answers == [200] * 20

        # The edge closes every slow connection once its header timeout is up.
        def all_closed() -> bool:
            readable, _, _ = select.select(slow, [], [], 0)
            for sock in readable:
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if data == b"":
                    slow.remove(sock)
                    sock.close()
            return not slow

        wait_until(all_closed, CLIENT_TIMEOUT_S + 15, "the edge closed the 500 slow connections")
    # None of them ever reached gunicorn: it answered the normal client's 20 requests and no more.
    assert requests_seen(service, route="/healthz", method="GET", status="200") - answered_before == 20


def test_an_order_is_a_miss_then_a_hit_with_the_same_bytes_and_etag(stack):
    topics, service, edge = stack
    order = publish(topics, seed=901)
    wait_consumed(topics)
    path = f"/order/{order['order_uid']}"
    first = edge.get(path)
    assert first[0] == 200 and first[1]["X-Cache-Status"] == "MISS"
    # nginx files the entry as it finishes the upstream response, which can be a moment after
    # the client has its last byte: the next request soon after is a HIT.
    second = wait_until(lambda: (answer := edge.get(path))[1].get("X-Cache-Status") == "HIT" and answer,
                        5, "the edge answered the order from its cache")
    assert second[0] == 200
    assert first[2] == second[2] and json.loads(first[2])["order_uid"] == order["order_uid"]
    assert first[1]["ETag"] == second[1]["ETag"]

    not_modified = edge.get(path, headers={"If-None-Match": first[1]["ETag"]})
    assert not_modified[0] == 304 and not_modified[2] == b""
    assert not_modified[1]["X-Cache-Status"] == "HIT"  # answered by the edge, not the app
    assert edge.get(path, headers={"If-None-Match": '"other"'})[0] == 200
    # A query string is no way around the cache.
    assert edge.get(path + "?x=1")[1]["X-Cache-Status"] == "HIT"


def test_an_order_consumed_after_its_404_shows_through_the_edge_within_the_miss_ttl(stack):
    topics, service, edge = stack
    order = next(OrderFactory(seed=902).orders(1))
    path = f"/order/{order['order_uid']}"
    assert edge.get(path)[0] == 404
    # nginx files the entry as it finishes the upstream response (see above): awaited, within the
    # CACHE_MISS_TTL that it is kept for.
    remembered = wait_until(lambda: (answer := edge.get(path))[1].get("X-Cache-Status") == "HIT" and answer,
                            CACHE_MISS_TTL, "the edge answered the 404 from its cache")
    assert remembered[0] == 404
    assert is_json_error(remembered[2])

    produce(topics.bootstrap, topics.orders, [(order["order_uid"].encode(), encode(order))])
    wait_consumed(topics)
    stored_by = time.monotonic()
    wait_until(lambda: edge.get(path)[0] == 200, CACHE_MISS_TTL + 1,
               f"the edge served the order within CACHE_MISS_TTL ({CACHE_MISS_TTL} s) + 1 s")
    assert time.monotonic() - stored_by <= CACHE_MISS_TTL + 1


def test_a_400_is_never_cached(stack):
    _, _, edge = stack
    for _ in range(3):
        status, headers, body = edge.get("/order/not%20an%20id")
        assert status == 400 and headers["X-Cache-Status"] != "HIT" and is_json_error(body)


def test_a_503_from_the_app_is_never_cached(tmp_path, database_url, kafka_bootstrap, full_access):
    # The app with PostgreSQL unreachable: nothing listens on the port of its DATABASE_URL.
    dead_db = f"postgresql+psycopg2://orders:orders@127.0.0.1:{free_port()}/orders"
    topics = create_topics(kafka_bootstrap)
    service = Service(service_env(dead_db, topics, CONSUMER_ENABLED="false"), tmp_path / "service.log",
                      credentials=full_access)
    edge = Edge(f"127.0.0.1:{service.port}", tmp_path, credentials=full_access)
    try:
        service.start()
        edge.start()
        path = f"/order/{next(OrderFactory(seed=903).orders(1))['order_uid']}"
        unavailable = {"route": "/order/<path:order_uid>", "method": "GET", "status": "503"}
        before = requests_seen(service, **unavailable)
        for _ in range(3):
            status, headers, body = edge.get(path)
            assert status == 503 and headers["X-Cache-Status"] != "HIT" and is_json_error(body)
        assert requests_seen(service, **unavailable) - before == 3, "every request reached the app"
    finally:
        edge.stop()
        service.kill()
        delete_topics(topics)


def test_an_unreachable_app_is_a_json_503_without_details(tmp_path):
    edge = Edge(f"127.0.0.1:{free_port()}", tmp_path).start()  # nothing listens there
    try:
        status, headers, body = edge.get("/readyz")
        assert status == 503 and is_json_error(body) and headers["Retry-After"]
        assert b"refused" not in body.lower() and b"nginx" not in body.lower()
    finally:
        edge.stop()


def test_every_request_gets_an_id_returned_and_written_in_both_logs(stack):
    _, service, edge = stack
    sent = f"test-{uuid.uuid4()}"
    status, headers, _ = edge.get("/healthz", headers={"X-Request-ID": sent})
    assert status == 200 and headers["X-Request-ID"] == sent
    wait_until(lambda: f"request_id={sent}" in service.log(), 5, "the app logged the request's id")
    wait_until(lambda: f"request_id={sent}" in edge.access_log(), 5, "the edge logged the request's id")

    # None sent, or one that is not an id: the edge makes one, and the app logs that one.
    for header in ({}, {"X-Request-ID": "bad id; with spaces"}, {"X-Request-ID": "x" * 200}):
        status, headers, _ = edge.get("/healthz", headers=header)
        made = headers["X-Request-ID"]
        assert status == 200 and re.fullmatch(r"[0-9a-f]{32}", made)
        wait_until(lambda made=made: f"request_id={made}" in service.log(), 5, "the app logged the id")


def test_a_request_body_is_refused_at_the_edge(stack):
    _, service, edge = stack
    before = requests_seen(service)
    for method in ("POST", "GET"):
        status, _, body = edge.get("/healthz", method=method, body=b'{"a": 1}',
                                   headers={"Content-Type": "application/json"})
        assert status == 413 and is_json_error(body)
    assert requests_seen(service) == before  # neither reached the app


def test_oversized_headers_and_urls_get_the_json_error_shape(stack):
    _, _, edge = stack
    status, _, body = edge.get("/healthz", headers={"X-Big": "a" * 20_000})
    assert status == 431 and is_json_error(body)
    status, _, body = edge.get("/order/" + "a" * 20_000)
    assert status == 414 and is_json_error(body)


def test_metrics_answer_only_the_allowed_addresses(stack):
    _, _, edge = stack
    status, _, body = edge.get("/metrics")  # from 127.0.0.1, outside METRICS_ALLOW
    assert status == 403 and is_json_error(body)
    status, _, body = edge.get("/metrics", source="127.0.0.2")
    assert status == 200 and b"http_request_duration_seconds" in body


def test_json_is_compressed_and_the_versioned_stylesheet_kept_long(stack):
    _, service, edge = stack
    status, headers, _ = edge.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    page = edge.get("/auth/callback")[2].decode()  # a page anyone gets: a sign-in that can't finish
    stylesheet = re.search(r'href="(/web/static/style\.css\?v=[0-9a-f]+)"', page).group(1)
    status, headers, _ = edge.get(stylesheet)
    assert status == 200 and "immutable" in headers["Cache-Control"]
    assert edge.get("/web/static/style.css")[1]["Cache-Control"] == "no-cache"


def test_the_app_sees_the_client_address_the_edge_saw_not_a_forged_one(stack):
    _, service, edge = stack
    sent = f"test-{uuid.uuid4()}"
    status, _, _ = edge.get("/healthz", source="127.0.0.2",
                            headers={"X-Request-ID": sent, "X-Forwarded-For": "203.0.113.9"})
    assert status == 200
    line = wait_until(lambda: next((row for row in service.log().splitlines() if sent in row), None), 5,
                      "the app logged the request")
    assert "127.0.0.2" in line and "203.0.113.9" not in line
