"""Who may reach each route: the one table. Every endpoint of the app must be in it, or the app
refuses to start (`check_coverage`), so a new route can't be added unprotected; tests/test_auth.py
walks the URL map and /openapi.json against it too."""

from dataclasses import dataclass

from flask import Flask

READ = "orders:read"
LIST = "orders:list"
PII = "orders:pii"
SCOPES = {
    READ: "one order by id (its personal fields masked without orders:pii)",
    LIST: "the recent-orders list (never personal fields)",
    PII: "the personal fields of an order, in full",
}


@dataclass(frozen=True, slots=True)
class Policy:
    """`public`: anyone. `token`: a bearer token with `scope` (checked in front of the app by
    app/auth/layer.py). `page`: a signed-in person, the scope checked by the page itself (it
    depends on what the page shows)."""

    kind: str
    scope: str | None = None


PUBLIC = Policy("public")
PAGE = Policy("page")

ROUTE_POLICIES: dict[str, Policy] = {
    "health.healthz": PUBLIC,
    # Its status for anyone; its details only for METRICS_ALLOW (app/health).
    "health.readyz": PUBLIC,
    # No order data; the edge answers it to METRICS_ALLOW only.
    "metrics": PUBLIC,
    "openapi_json": PUBLIC,
    "web.static": PUBLIC,
    "static": PUBLIC,
    "api.order_json": Policy("token", READ),
    "api.recent_orders_json": Policy("token", LIST),
    "web.index": PAGE,
    # Signing in and out: the flow's own state and the session's CSRF token protect them.
    "auth.signin": PUBLIC,
    "auth.callback": PUBLIC,
    "auth.signout": PUBLIC,
}


def check_coverage(app: Flask) -> None:
    """RuntimeError naming every endpoint without a policy."""
    missing = sorted({rule.endpoint for rule in app.url_map.iter_rules()} - set(ROUTE_POLICIES))
    if missing:
        raise RuntimeError(f"routes without an access policy: {', '.join(missing)}; "
                           "add each to ROUTE_POLICIES in app/auth/policy.py")
