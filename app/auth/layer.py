"""The access check in front of the app: a WSGI layer outside the cache-hit fast path and Flask, so
that no path to an order's bytes can skip it.

For a route whose policy wants a token (app/auth/policy.py) it refuses, before anything else runs:
a token in the URL (400), no token or a bad one (401 with `WWW-Authenticate: Bearer`), a missing
scope (403), a provider it can't reach for the keys (503). For GET /order/<id> it then serves the
order as the caller may see it: in full with `orders:pii` (`Cache-Control: no-store`), else
masked (`private, no-cache`, `Vary: Authorization`, its own ETag), answers `If-None-Match`
against that form, and writes one audit line per order read.

It also answers the edge's question (EDGE_CHECK_PATH, nginx's `auth_request`): may this token
read an order, and in which form; the edge keeps the answer for AUTH_EDGE_CACHE_S, never past
the token's expiry (README, "Security").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_etags

from app.api.routes import FULL_ORDER_CACHE_CONTROL
from app.auth.audit import audit_order_read
from app.auth.masking import mask_document
from app.auth.policy import PII, READ, ROUTE_POLICIES
from app.auth.tokens import Authenticator, Principal, Refusal
from app.cache import CachedOrder, OrderCache
from app.metrics import HTTP_DURATION
from app.security import SECURITY_HEADERS

PRINCIPAL = "order_service.principal"
EDGE_CHECK_PATH = "/_auth/order"
ORDER_PREFIX = "/order/"
ORDER_ENDPOINT = "api.order_json"
MASKED_CACHE_CONTROL = "private, no-cache"
REALM = "order-service"
_REPLACED = {"etag", "cache-control", "content-length", "vary"}


def www_authenticate(refusal: Refusal, scope: str | None = None) -> str:
    """RFC 6750's challenge: no error code when no token was sent, else the code and why."""
    value = f'Bearer realm="{REALM}"'
    if refusal.error:
        description = "".join(c for c in refusal.message
                              if c.isascii() and c.isprintable() and c not in '"\\')
        value += f', error="{refusal.error}", error_description="{description}"'
    if scope and refusal.error == "insufficient_scope":
        value += f', scope="{scope}"'
    return value


def refusal_headers(refusal: Refusal, scope: str | None) -> list[tuple[str, str]]:
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
    if refusal.status in (401, 403):
        headers.append(("WWW-Authenticate", www_authenticate(refusal, scope)))
    if refusal.status == 503:
        headers.append(("Retry-After", "5"))
    return headers


def token_in_query(query: str) -> bool:
    return "token" in query.lower() and any(
        name.lower() == "access_token" for name, _ in parse_qsl(query, keep_blank_values=True))


TOKEN_IN_URL = Refusal(400, "invalid_request", "a token in the URL is refused (URLs end up in logs): "
                                               "send Authorization: Bearer <token>")


class AccessLayer:
    """WSGI middleware; `masked` keeps each order's masked form, made once (orders never change)."""

    def __init__(self, wsgi_app: Callable, app: Flask, authenticator: Authenticator,
                 masked: OrderCache) -> None:
        self.wsgi_app = wsgi_app
        self.url_map = app.url_map
        self.authenticator = authenticator
        self.masked = masked
        self.edge_cache_s = app.config["AUTH_EDGE_CACHE_S"]
        self.order_rule = next(rule.rule for rule in app.url_map.iter_rules()
                               if rule.endpoint == ORDER_ENDPOINT)

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == EDGE_CHECK_PATH:
            return self.edge_check(environ, start_response)
        endpoint, rule = self.route(environ, path)
        policy = ROUTE_POLICIES.get(endpoint) if endpoint else None
        if policy is None or policy.kind != "token":
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        admitted = self.admit(environ, policy.scope)
        if isinstance(admitted, Refusal):
            HTTP_DURATION.labels(rule, environ.get("REQUEST_METHOD", "GET"), str(admitted.status)).observe(
                time.perf_counter() - started)
            return self.refuse(start_response, admitted, policy.scope)
        environ[PRINCIPAL] = admitted
        if endpoint == ORDER_ENDPOINT and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return self.serve_order(environ, start_response, admitted, path[len(ORDER_PREFIX):])
        return self.wsgi_app(environ, start_response)

    def route(self, environ: dict[str, Any], path: str) -> tuple[str | None, str]:
        """The endpoint the app would route this request to (None if none), and its rule."""
        if path.startswith(ORDER_PREFIX):  # the hot path: ORDER_ROUTE takes every path under it
            return ORDER_ENDPOINT, self.order_rule
        try:
            rule, _ = self.url_map.bind_to_environ(environ).match(return_rule=True)
        except HTTPException:
            return None, "unmatched"
        return rule.endpoint, rule.rule

    def admit(self, environ: dict[str, Any], scope: str | None) -> Principal | Refusal:
        if token_in_query(environ.get("QUERY_STRING", "")):
            return TOKEN_IN_URL
        principal = self.authenticator.authenticate(environ.get("HTTP_AUTHORIZATION"))
        if isinstance(principal, Principal) and scope and not principal.may(scope):
            return Refusal(403, "insufficient_scope", f"this needs the {scope} scope")
        return principal

    @staticmethod
    def refuse(start_response: Callable, refusal: Refusal, scope: str | None) -> list[bytes]:
        body = json.dumps({"error": refusal.code, "message": refusal.message}).encode()
        start_response(f"{refusal.status} {_REASONS[refusal.status]}", [
            *refusal_headers(refusal, scope), ("Content-Length", str(len(body))), *SECURITY_HEADERS.items()])
        return [body]

    def serve_order(self, environ: dict[str, Any], start_response: Callable, principal: Principal,
                    order_uid: str) -> Iterable[bytes]:
        """The inner app answers in full (conditional requests made plain); the answer goes out
        in the caller's form, 304 if the caller has that form's ETag."""
        wanted = environ.pop("HTTP_IF_NONE_MATCH", None)
        head = environ.get("REQUEST_METHOD") == "HEAD"
        environ["REQUEST_METHOD"] = "GET"  # the body is needed to mask it and to know its ETag
        try:
            status, headers, body = call_inner(self.wsgi_app, environ)
        finally:
            environ["REQUEST_METHOD"] = "HEAD" if head else "GET"
        if not status.startswith("200 "):
            start_response(status, headers)
            return [b""] if head else [body]
        full = principal.may(PII)
        if full:
            etag = next(value for name, value in headers if name.lower() == "etag")
        else:
            cached = self.masked.lookup(order_uid)
            if not isinstance(cached, CachedOrder):
                cached = self.masked.put_document(mask_document(json.loads(body)))
            body, etag = cached.body, f'"{cached.etag}"'
        kept = [(name, value) for name, value in headers if name.lower() not in _REPLACED]
        kept += [("ETag", etag), ("X-Order-View", "full" if full else "masked")]
        kept += [("Cache-Control", FULL_ORDER_CACHE_CONTROL)] if full else [
            ("Cache-Control", MASKED_CACHE_CONTROL), ("Vary", "Authorization")]
        audit_order_read(principal, order_uid, not full, environ.get("HTTP_X_REQUEST_ID", "-"), "api")
        if wanted and parse_etags(wanted).contains(etag.strip('"')):
            start_response("304 Not Modified", [(n, v) for n, v in kept if n.lower() != "content-type"])
            return [b""]
        start_response(status, [*kept, ("Content-Length", str(len(body)))])
        return [b""] if head else [body]

    def edge_check(self, environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        """nginx's auth_request: 200 with the form this token may read, or the refusal's status.
        `X-Accel-Expires` tells the edge how long to keep the answer."""
        admitted = self.admit(environ, READ)
        if isinstance(admitted, Refusal):
            keep = self.edge_cache_s if admitted.status in (401, 403) else 0
            headers = [*refusal_headers(admitted, READ), ("X-Auth-Error", admitted.code),
                       ("X-Auth-Message", admitted.message), ("X-Accel-Expires", str(keep))]
            status = f"{admitted.status} {_REASONS[admitted.status]}"
            start_response(status, [*headers, ("Content-Length", "0")])
            return [b""]
        keep = max(0, min(self.edge_cache_s, int(admitted.valid_until - time.time())))
        start_response("200 OK", [
            ("X-Order-View", "full" if admitted.may(PII) else "masked"),
            ("X-Auth-Subject", admitted.subject), ("X-Auth-Client", admitted.client_id),
            ("X-Auth-Scopes", " ".join(sorted(admitted.scopes))),
            ("X-Accel-Expires", str(keep)), ("Cache-Control", "no-store"), ("Content-Length", "0")])
        return [b""]


_REASONS = {200: "OK", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            503: "Service Unavailable"}


def call_inner(wsgi_app: Callable, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run a WSGI app to completion: (status, headers, body)."""
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    result = wsgi_app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return captured["status"], captured["headers"], body
