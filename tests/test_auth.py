"""Who may see an order, against the real provider (Keycloak from `make infra`), the real service
under gunicorn and the edge (nginx) in front of it. Every refusal is asked of both: gunicorn
directly, and through the edge (whose cache must never hand an answer to a caller who may not
see it).

Tokens come from the provider (client credentials). The forged ones are what an attacker sends;
those that need the provider's signature (wrong iss, aud, exp, nbf) are signed with a key added
to the provider through its admin API, which the provider then publishes in its JWKS: the
service finds it there, as it would a rotated key."""

import base64
import contextlib
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.seed import encode
from config import Config
from harness import ROOT
from harness.edge import Edge, nginx_binary
from harness.kafka import all_committed, create_topics, delete_topics, produce
from harness.oidc import Admin, client_token_response
from harness.service import Service, free_port, service_env
from harness.waiting import wait_until
from tests.helpers import contract_example, metric

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed: run `make infra`"),
]

READ, LIST, PII = "orders:read", "orders:list", "orders:pii"
EXAMPLE = contract_example()
PATH = f"/order/{EXAMPLE['order_uid']}"
# The contract example's personal fields as a caller without orders:pii sees them
# (docs/contract/README.md, "Personal fields").
MASKED_DELIVERY = {"name": "T*** T*****", "phone": "+9*******00", "zip": "2******",
                   "address": "P****** M*** 1*", "email": "t***@gmail.com"}
MASKED_PAYMENT = {"transaction": "b******************", "request_id": ""}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, app, database_url, kafka_bootstrap):
    """gunicorn (2 workers, consumers on) with the contract's example consumed from Kafka, and an
    edge in front of it. AUTH_JWKS_REFRESH_S is short so that a key added to the provider is
    found within the test."""
    work = tmp_path_factory.mktemp("auth")
    topics = create_topics(kafka_bootstrap)
    env = {"AUTH_JWKS_REFRESH_S": "2", "EDGE_LOOKUP_RATE": "5", "EDGE_LOOKUP_BURST": "10"}
    service = Service(service_env(database_url, topics, **env), work / "service.log")
    edge = Edge(f"127.0.0.1:{service.port}", work, env)
    try:
        service.start()
        edge.start()
        produce(topics.bootstrap, topics.orders, [(EXAMPLE["order_uid"].encode(), encode(EXAMPLE))])
        wait_until(lambda: all_committed(topics), 60, "the service consumed the example")
        yield {"direct": service, "edge": edge}
    finally:
        edge.stop()
        service.kill()
        delete_topics(topics)


@pytest.fixture(params=["direct", "edge"])
def target(request, stack):
    """gunicorn directly, or the edge in front of it."""
    return stack[request.param]


@contextlib.contextmanager
def key_at_the_provider() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    """An RSA key added to the provider (at a low priority: it keeps signing its own tokens with
    its own key), published in its JWKS: (kid, private key). Removed afterwards."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    admin = Admin.connect()
    component = admin.add_rsa_key(f"test-{uuid.uuid4()}", pem, priority=1)
    try:
        yield admin.kid_of(component), private
    finally:
        admin.remove_component(component)


def accepted_within(target, key, timeout_s: float) -> tuple:
    """Polls with a new token each time (the edge keeps each token's answer) until one reads."""
    def reads() -> tuple | None:
        answer = get(target, token=signed(key, jti=str(uuid.uuid4())))
        return answer if answer[0] == 200 else None

    return wait_until(reads, timeout_s, "the service found the provider's new key")


@pytest.fixture(scope="module")
def provider_key(stack):
    """A key of the provider's that both workers know (each fetched the keys again for it)."""
    with key_at_the_provider() as key:
        for _ in range(10):  # the two workers answer in turn
            accepted_within(stack["direct"], key, 10)
        yield key


def claims(**changes) -> dict:
    """What the provider's tokens hold, for a caller with orders:read; `changes` override."""
    now = int(time.time())
    base = {"iss": Config.AUTH_ISSUER, "aud": Config.AUTH_AUDIENCE, "sub": "forged-subject",
            "azp": Config.AUTH_CLI_CLIENT_ID, "scope": READ, "iat": now, "exp": now + 300}
    return {**base, **changes}


def signed(provider_key, **changes) -> str:
    kid, private = provider_key
    return jwt.encode(claims(**changes), private, algorithm="RS256", headers={"kid": kid})


def b64(document: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get(target, path: str = PATH, token: str | None = None, headers: dict | None = None):
    """(status, headers, JSON or raw body), without the harness' own credentials."""
    sent = {**(bearer(token) if token is not None else {}), **(headers or {})}
    status, answer_headers, body = target.get(path, headers=sent, anonymous=True)
    try:
        return status, answer_headers, json.loads(body)
    except ValueError:
        return status, answer_headers, body


def refused(answer, status: int, error: str) -> None:
    code, headers, body = answer
    assert (code, body.get("error") if isinstance(body, dict) else body) == (status, error), answer
    assert set(body) == {"error", "message"} and body["message"]
    assert not any(value in json.dumps(body) for value in MASKED_DELIVERY), "no order data in a refusal"
    if status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer ")
        if error != "missing_token":
            assert f'error="{error}"' in headers["WWW-Authenticate"]


# --- what each caller sees ------------------------------------------------------------------------

def test_orders_pii_reads_the_order_exactly_as_it_came_in(target, tokens):
    status, headers, body = get(target, token=tokens(READ, PII))
    assert status == 200 and headers["X-Order-View"] == "full"
    assert headers["Cache-Control"] == "no-store"
    # Byte for byte what the consumer stored (the served form: the contract's field order, UTC).
    assert body == EXAMPLE


def test_without_orders_pii_the_personal_fields_are_masked(target, tokens):
    status, headers, body = get(target, token=tokens(READ))
    assert status == 200 and headers["X-Order-View"] == "masked"
    assert headers["Cache-Control"] == "private, no-cache" and "Authorization" in headers["Vary"]
    assert {field: body["delivery"][field] for field in MASKED_DELIVERY} == MASKED_DELIVERY
    assert {field: body["payment"][field] for field in MASKED_PAYMENT} == MASKED_PAYMENT
    # Everything else is the order as it came in.
    for group in ("delivery", "payment"):
        for field, value in EXAMPLE[group].items():
            if field not in {**MASKED_DELIVERY, **MASKED_PAYMENT}:
                assert body[group][field] == value
    assert body["items"] == EXAMPLE["items"] and body["order_uid"] == EXAMPLE["order_uid"]


def test_the_masked_and_full_forms_have_their_own_etags_and_answer_if_none_match(target, tokens):
    full = get(target, token=tokens(READ, PII))[1]["ETag"]
    masked = get(target, token=tokens(READ))[1]["ETag"]
    assert full != masked
    assert get(target, token=tokens(READ), headers={"If-None-Match": masked})[0] == 304
    # The full form's ETag is no way to the full form for a masked caller.
    status, _, body = get(target, token=tokens(READ), headers={"If-None-Match": full})
    assert status == 200 and body["delivery"]["name"] == MASKED_DELIVERY["name"]


def test_the_list_needs_orders_list_and_never_shows_personal_fields(target, tokens):
    refused(get(target, "/orders", token=tokens(READ, PII)), 403, "insufficient_scope")
    status, headers, body = get(target, "/orders", token=tokens(LIST))
    assert status == 200 and body["orders"]
    assert headers["Cache-Control"] == "private, no-cache" and "Authorization" in headers["Vary"]
    text = json.dumps(body, ensure_ascii=False)
    for value in [*EXAMPLE["delivery"].values(), EXAMPLE["payment"]["transaction"]]:
        if value and value != EXAMPLE["delivery"]["city"] and value != EXAMPLE["order_uid"]:
            assert value not in text, f"{value!r} is personal and shown in the list"


# The issue's table: each caller against each route, with the status and the form it must get.
CALLERS = {"none": (), "read": (READ,), "read+list": (READ, LIST), "read+pii": (READ, PII)}
EXPECTED = {
    PATH: {"none": (401, None), "read": (200, "masked"), "read+list": (200, "masked"),
           "read+pii": (200, "full")},
    "/orders?limit=5": {"none": (401, None), "read": (403, None), "read+list": (200, None),
                        "read+pii": (403, None)},
    "/healthz": dict.fromkeys(CALLERS, (200, None)),
    "/openapi.json": dict.fromkeys(CALLERS, (200, None)),
}


@pytest.mark.parametrize("path", list(EXPECTED))
def test_routes_by_caller(target, tokens, path):
    seen = {}
    for caller, scopes in CALLERS.items():
        status, headers, _ = get(target, path, token=tokens(*scopes) if scopes else None)
        seen[caller] = (status, headers.get("X-Order-View"))
    assert seen == EXPECTED[path]


def test_flask_auth_token_prints_a_token_the_service_accepts(target):
    run = subprocess.run([str(Path(sys.executable).with_name("flask")), "auth", "token", "--scope", READ,
                          "--scope", LIST], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    token = run.stdout.strip()
    assert len(run.stdout.splitlines()) == 1 and token.count(".") == 2
    status, headers, _ = get(target, token=token)
    assert (status, headers["X-Order-View"]) == (200, "masked")
    assert get(target, "/orders?limit=5", token=token)[0] == 200


def test_a_token_without_orders_read_may_not_read_an_order(target, tokens):
    answer = get(target, token=tokens(LIST))
    refused(answer, 403, "insufficient_scope")
    assert 'scope="orders:read"' in answer[1]["WWW-Authenticate"]


# --- refusals -------------------------------------------------------------------------------------

def test_no_token_is_401_with_a_bearer_challenge(target):
    refused(get(target), 401, "missing_token")
    refused(get(target, "/orders"), 401, "missing_token")


def test_alg_none_is_refused(target):
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(scope=f'{READ} {PII}'))}."
    refused(get(target, token=token), 401, "invalid_token")


@pytest.mark.parametrize("algorithm", ['x", "error": "forged', "\u00e9\u6f22"])
def test_a_crafted_algorithm_name_is_refused_in_valid_json_that_does_not_echo_it(target, algorithm):
    # The edge writes the refusal's message into its JSON without escaping: a message that
    # repeated the token's own `alg` would let a caller forge the body (or break the header).
    token = f"{b64({'alg': algorithm, 'typ': 'JWT', 'kid': 'k'})}.{b64(claims(scope=READ))}.c2ln"
    answer = get(target, token=token)
    refused(answer, 401, "invalid_token")
    assert algorithm not in answer[2]["message"]


def test_an_hs256_token_signed_with_the_providers_public_key_is_refused(target, provider_key):
    kid, private = provider_key
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    header = b64({"alg": "HS256", "typ": "JWT", "kid": kid})
    payload = b64(claims(scope=f"{READ} {PII}"))
    import hashlib
    import hmac
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"
    refused(get(target, token=token), 401, "invalid_token")


def test_a_tampered_payload_is_refused(target, tokens):
    header, payload, signature = tokens(READ).split(".")
    document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    document["scope"] = f"{READ} {PII}"  # a masked caller asking for the full form
    refused(get(target, token=f"{header}.{b64(document)}.{signature}"), 401, "invalid_token")


def test_a_token_of_another_issuer_is_refused(target, provider_key):
    refused(get(target, token=signed(provider_key, iss="http://127.0.0.1:1/realms/elsewhere")),
            401, "invalid_token")


def test_a_token_for_another_audience_is_refused(target, provider_key):
    refused(get(target, token=signed(provider_key, aud="another-service")), 401, "invalid_token")
    # And a real one from the provider that names no audience of ours (no orders scope asked for).
    real = client_token_response(())["access_token"]
    refused(get(target, token=real), 401, "invalid_token")


def test_expired_and_not_yet_valid_tokens_are_refused(target, provider_key):
    now = int(time.time())
    leeway = Config.AUTH_LEEWAY_S
    expired = signed(provider_key, iat=now - 900, exp=now - leeway - 60)
    refused(get(target, token=expired), 401, "invalid_token")
    refused(get(target, token=signed(provider_key, nbf=now + leeway + 60)), 401, "invalid_token")
    # Within the leeway, a clock a little behind the provider's still reads.
    assert get(target, token=signed(provider_key, iat=now - 300, exp=now - leeway // 2))[0] == 200


def test_a_token_the_provider_signed_with_a_new_key_is_accepted(target, provider_key):
    """A key added after the service fetched the provider's keys: the unknown kid makes it fetch
    them again (at most every AUTH_JWKS_REFRESH_S), as when the provider rotates its keys."""
    with key_at_the_provider() as rotated:
        assert get(target, token=signed(rotated))[0] in (200, 401)
        answer = accepted_within(target, rotated, 10)
    assert answer[2]["delivery"]["name"] == MASKED_DELIVERY["name"]


def test_unknown_kids_are_refused_without_hammering_the_provider(stack, target, provider_key):
    _, private = provider_key
    service = stack["direct"]
    before = metric(service.get("/metrics")[2].decode(), "auth_key_fetches_total")
    started = time.monotonic()
    for _ in range(40):
        token = jwt.encode(claims(), private, algorithm="RS256", headers={"kid": f"unknown-{uuid.uuid4()}"})
        refused(get(target, token=token), 401, "invalid_token")
    elapsed = time.monotonic() - started
    fetches = metric(service.get("/metrics")[2].decode(), "auth_key_fetches_total") - before
    # At most one fetch per AUTH_JWKS_REFRESH_S (2 s here) in each of the 2 workers.
    assert fetches <= 2 * (elapsed / 2 + 1), f"{fetches} fetches of the provider's keys in {elapsed:.1f} s"


def test_a_token_in_the_query_string_is_refused(target, tokens):
    answer = get(target, f"{PATH}?access_token={tokens(READ, PII)}")
    assert answer[0] == 400 and answer[2]["error"] == "invalid_request"
    # Even beside a valid header.
    assert get(target, f"{PATH}?access_token=x", token=tokens(READ))[0] == 400


def test_an_oversized_authorization_header_is_refused(target):
    status, _, body = get(target, headers={"Authorization": "Bearer " + "a" * 9000})
    # The edge: 431 (its header limit); gunicorn alone: its own 400. Never a 5xx, never an order.
    assert status in (400, 431)
    assert b"Test Testov" not in (body if isinstance(body, bytes) else json.dumps(body).encode())
    refused(get(target, token="a" * 6000), 401, "invalid_token")


def test_a_malformed_authorization_header_is_refused(target, tokens):
    refused(get(target, headers={"Authorization": f"Basic {tokens(READ)}"}), 401, "invalid_request")
    refused(get(target, headers={"Authorization": "Bearer"}), 401, "invalid_request")


# --- the edge's caches ----------------------------------------------------------------------------

def test_after_a_cached_hit_a_caller_without_a_token_is_refused(stack, tokens):
    edge = stack["edge"]
    wait_until(lambda: get(edge, token=tokens(READ, PII))[1].get("X-Cache-Status") == "HIT", 5,
               "the edge answered the full form from its cache")
    refused(get(edge), 401, "missing_token")
    refused(get(edge, token="not-a-jwt"), 401, "invalid_token")


def test_a_caller_without_orders_pii_never_gets_the_cached_full_copy(stack, tokens):
    edge = stack["edge"]
    wait_until(lambda: get(edge, token=tokens(READ, PII))[1].get("X-Cache-Status") == "HIT", 5,
               "the full form is in the edge's cache")
    for _ in range(3):
        status, headers, body = get(edge, token=tokens(READ))
        assert status == 200 and headers["X-Order-View"] == "masked"
        assert body["delivery"]["name"] == MASKED_DELIVERY["name"]


def test_rate_limits_answer_429_with_retry_after_past_the_rate(stack, tokens):
    """Lookups that miss the edge's cache (unknown ids) and the list, past EDGE_LOOKUP_RATE (5 a
    second here, bursts of 10); normal use (a few reads) never meets them."""
    edge = stack["edge"]
    assert [get(edge, "/orders", token=tokens(LIST))[0] for _ in range(3)] == [200] * 3
    statuses = [get(edge, f"/order/unknown-{uuid.uuid4().hex}", token=tokens(READ), headers={})[0]
                for _ in range(40)]
    assert 404 in statuses and 429 in statuses, statuses
    status, headers, body = get(edge, f"/order/unknown-{uuid.uuid4().hex}", token=tokens(READ))
    assert status == 429 and headers["Retry-After"] and body["error"] == "too_many_requests"
    assert 429 in [get(edge, "/orders", token=tokens(LIST))[0] for _ in range(30)]
    # The cached order is still read by anyone who may.
    assert get(edge, token=tokens(READ))[0] == 200


def test_every_read_writes_one_audit_line_without_the_personal_data(stack, tokens):
    service, edge = stack["direct"], stack["edge"]
    request_id = f"audit-{uuid.uuid4()}"
    assert get(service, token=tokens(READ), headers={"X-Request-ID": request_id})[0] == 200
    line = wait_until(lambda: next((row for row in service.log().splitlines()
                                    if request_id in row and "order read" in row), None), 5, "the audit line")
    assert "masked=True" in line and f"order_uid={EXAMPLE['order_uid']}" in line
    assert "client_id=order-service-cli" in line and "orders:read" in line
    assert "Test Testov" not in line and "test@gmail.com" not in line
    edge_id = f"audit-{uuid.uuid4()}"
    assert get(edge, token=tokens(READ, PII), headers={"X-Request-ID": edge_id})[0] == 200
    audit = edge.prefix / "logs" / "audit.log"
    entry = wait_until(lambda: next((json.loads(row) for row in (audit.read_text() if audit.exists() else "")
                                     .splitlines() if edge_id in row), None), 5, "the edge's audit line")
    assert entry["masked"] is False and entry["order_uid"] == EXAMPLE["order_uid"]
    assert entry["client_id"] == Config.AUTH_CLI_CLIENT_ID and "orders:pii" in entry["scopes"]


# --- the provider away ----------------------------------------------------------------------------

def test_a_provider_that_does_not_answer_is_a_503_soon_never_a_500(tmp_path, database_url, kafka_bootstrap,
                                                                    tokens):
    """The provider's port accepts connections and never answers: each request that needs the
    keys waits AUTH_PROVIDER_TIMEOUT_S at most, then gets a 503; no thread is held longer."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    issuer = f"http://127.0.0.1:{silent.getsockname()[1]}/realms/order-service"
    topics = create_topics(kafka_bootstrap)
    service = Service(service_env(database_url, topics, CONSUMER_ENABLED="false", AUTH_ISSUER=issuer,
                                  AUTH_PROVIDER_TIMEOUT_S="1"), tmp_path / "service.log")
    edge = Edge(f"127.0.0.1:{service.port}", tmp_path, {"AUTH_ISSUER": issuer})
    try:
        service.start()
        edge.start()
        for target in (service, edge):
            for _ in range(3):
                started = time.monotonic()
                status, _, body = get(target, token=tokens(READ))
                assert status == 503 and body["error"] == "temporarily_unavailable", (status, body)
                assert time.monotonic() - started < 4
        assert service.get("/healthz")[0] == 200  # the workers' threads are free
    finally:
        edge.stop()
        service.kill()
        delete_topics(topics)
        silent.close()


def test_a_provider_that_is_down_is_a_503_and_the_page_says_so(app, database_url, tokens):
    from app import create_app
    from config import TestConfig

    down = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url,
                                   "AUTH_ISSUER": f"http://127.0.0.1:{free_port()}/realms/order-service"})
    client = down.test_client()
    answer = client.get(PATH, headers=bearer(tokens(READ)))
    assert answer.status_code == 503 and answer.get_json()["error"] == "temporarily_unavailable"
    page = client.get("/auth/signin")
    assert page.status_code == 503 and b"can't be reached" in page.data.replace(b"&#39;", b"'")
