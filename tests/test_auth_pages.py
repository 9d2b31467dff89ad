"""Signing in to the page (authorization code + PKCE against the real provider), signing out, the
forgeries around them, and that no route is left unprotected (the URL map and /openapi.json
walked against the access policies)."""

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from app import create_app
from app.auth.policy import ROUTE_POLICIES
from config import Config, TestConfig
from harness.oidc import log_in_at_provider, user_password
from tests.helpers import SESSION_COOKIE, save, sign_in

READ, LIST, PII = "orders:read", "orders:list", "orders:pii"


@pytest.fixture
def browser(app, empty_db):
    """A client with nothing: no token, no session."""
    return app.test_client()


def test_the_sign_in_is_authorization_code_with_pkce(browser):
    started = browser.get("/auth/signin")
    assert started.status_code == 302
    target = urlsplit(started.headers["Location"])
    query = parse_qs(target.query)
    assert f"{target.scheme}://{target.netloc}{target.path}".startswith(Config.AUTH_ISSUER)
    assert query["response_type"] == ["code"] and query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) >= 43 and query["state"][0] and query["nonce"][0]
    assert set(query["scope"][0].split()) == {"openid", "profile", READ, LIST}


def test_a_signed_in_developer_sees_the_order_in_full_only_after_asking_for_it(app, browser, example_order):
    save(app, [example_order])
    sign_in(browser, "developer", pii=False)
    page = browser.get(f"/?id={example_order['order_uid']}").get_data(as_text=True)
    assert "T*** T*****" in page and "Test Testov" not in page and "Personal data is hidden" in page
    sign_in(browser, "developer", pii=True)
    page = browser.get(f"/?id={example_order['order_uid']}").get_data(as_text=True)
    assert "Test Testov" in page and "test@gmail.com" in page and "Personal data is hidden" not in page


def test_the_provider_grants_orders_pii_only_to_users_allowed_it(app, browser, example_order):
    """viewer has orders:read only: asking for orders:pii changes nothing, and the list is refused."""
    save(app, [example_order])
    sign_in(browser, "viewer", pii=True)
    page = browser.get(f"/?id={example_order['order_uid']}").get_data(as_text=True)
    assert "T*** T*****" in page and "Test Testov" not in page
    refused = browser.get("/")
    assert refused.status_code == 403 and "may not see the list" in refused.get_data(as_text=True)


def test_a_page_without_a_session_sends_to_the_sign_in_and_back(browser):
    answer = browser.get("/?id=some-order")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/auth/signin?next=/?id%3Dsome-order"
    sign_in(browser, "developer", pii=False, next_page="/?id=some-order")


def test_the_session_cookie_is_httponly_samesite_lax_and_secure_under_https(app):
    for scheme, secure in (("http", False), ("https", True)):
        client = app.test_client()
        started = client.get("/auth/signin", base_url=f"{scheme}://localhost")
        cookie = started.headers["Set-Cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert ("Secure" in cookie) is secure, cookie


def test_a_callback_this_browser_did_not_start_is_refused(app, browser):
    """Login CSRF: an attacker's own code and state, handed to a victim's browser."""
    attacker = app.test_client()
    started = attacker.get("/auth/signin")
    back = urlsplit(log_in_at_provider(started.headers["Location"], "viewer", user_password("viewer")))
    answer = browser.get(back.path, query_string=back.query)
    assert answer.status_code == 400 and "could not be completed" in answer.get_data(as_text=True)
    assert browser.get_cookie(SESSION_COOKIE) is None or browser.get("/").status_code == 302
    # The attacker's state is no good in its own browser twice either.
    assert attacker.get(back.path, query_string=back.query).status_code == 302
    assert attacker.get(back.path, query_string=back.query).status_code == 400


@pytest.mark.parametrize("next_page", ["https://evil.example/", "//evil.example/x", "/\\evil.example",
                                       "http:evil.example", "\t//evil.example"])
def test_the_sign_in_never_returns_to_another_site(browser, next_page):
    started = browser.get("/auth/signin", query_string={"next": next_page})
    back = urlsplit(log_in_at_provider(started.headers["Location"], "viewer", user_password("viewer")))
    finished = browser.get(back.path, query_string=back.query)
    assert finished.status_code == 302 and finished.headers["Location"] == "/"


def test_sign_out_needs_the_pages_csrf_token(browser):
    sign_in(browser, "developer")
    for form in ({}, {"csrf": "forged"}):
        refused = browser.post("/auth/signout", data=form)
        assert refused.status_code == 403
        assert browser.get("/").status_code == 200, "a forged sign-out must not end the session"
    page = browser.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    done = browser.post("/auth/signout", data={"csrf": token})
    assert done.status_code == 302
    ends_at = urlsplit(done.headers["Location"])
    assert f"{ends_at.scheme}://{ends_at.netloc}{ends_at.path}".startswith(Config.AUTH_ISSUER)
    assert parse_qs(ends_at.query)["post_logout_redirect_uri"] == ["http://localhost/"]
    assert browser.get("/").status_code == 302, "signed out"


def test_sign_out_is_post_only(browser):
    sign_in(browser, "developer")
    assert browser.get("/auth/signout").status_code == 405
    assert browser.get("/").status_code == 200


# --- every route covered --------------------------------------------------------------------------

def every_rule(app: Flask) -> list:
    return [rule for rule in app.url_map.iter_rules() if "GET" in rule.methods]


def example_path(rule) -> str:
    path = re.sub(r"<(?:[^:>]+:)?[^>]+>", "b563feb7b2b84b6test", rule.rule)
    return path.replace("/web/static/b563feb7b2b84b6test", "/web/static/style.css")


def test_every_route_of_the_url_map_has_a_policy_and_keeps_it(app, browser, example_order):
    save(app, [example_order])
    public = {"health.healthz", "health.readyz", "metrics", "openapi_json", "web.static", "static",
              "auth.signin", "auth.callback", "auth.signout"}
    for rule in every_rule(app):
        policy = ROUTE_POLICIES[rule.endpoint]
        path = example_path(rule)
        answer = browser.get(path)
        if rule.endpoint in public:
            assert policy.kind == "public", rule.endpoint
            assert answer.status_code not in (401, 403), (path, answer.status_code)
        elif policy.kind == "token":
            assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer"), path
        else:
            assert policy.kind == "page" and answer.status_code == 302, (path, answer.status_code)
            assert answer.headers["Location"].startswith("/auth/signin")
        assert b"Test Testov" not in answer.data, f"{path} shows personal data to anyone"


def test_a_route_without_a_policy_stops_the_app_from_starting(database_url):
    import app.auth.policy as policy

    class Unprotected(TestConfig):
        SQLALCHEMY_DATABASE_URI = database_url

    original = dict(policy.ROUTE_POLICIES)
    try:
        del policy.ROUTE_POLICIES["api.recent_orders_json"]
        with pytest.raises(RuntimeError, match="api.recent_orders_json"):
            create_app(Unprotected)
    finally:
        policy.ROUTE_POLICIES.clear()
        policy.ROUTE_POLICIES.update(original)


def test_the_openapi_document_names_the_scope_of_every_read(browser):
    document = browser.get("/openapi.json").get_json()
    scheme = document["components"]["securitySchemes"]["oidc"]
    assert scheme["type"] == "openIdConnect"
    assert scheme["openIdConnectUrl"] == f"{Config.AUTH_ISSUER}/.well-known/openid-configuration"
    expected = {"/order/{order_uid}": READ, "/orders": LIST}
    for path, operations in document["paths"].items():
        operation = operations["get"]
        if path in expected:
            assert operation["security"] == [{"oidc": [expected[path]]}]
            assert {"401", "403"} <= set(operation["responses"])
        else:
            assert "security" not in operation, f"{path} is public in the document"
            assert browser.get(path).status_code not in (401, 403), path
    assert set(expected) <= set(document["paths"])


def test_with_auth_off_every_start_warns_and_readyz_says_so(app, empty_db, database_url, example_order,
                                                             caplog):
    with caplog.at_level("WARNING", logger="app.auth"):
        closed = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "AUTH_ENABLED": False})
    assert any("AUTH_ENABLED=false" in record.getMessage() for record in caplog.records)
    client = closed.test_client()
    details = client.get("/readyz").get_json()["auth"]
    assert details["enabled"] is False and "personal data" in details["warning"]
    save(closed, [example_order])
    # Anyone reads everything then: that is what the warning is about.
    answer = client.get(f"/order/{example_order['order_uid']}")
    assert answer.status_code == 200 and answer.get_json() == example_order
    assert answer.headers["Cache-Control"] == "no-store"


def test_readyz_gives_its_details_to_metrics_allow_only(app):
    client = app.test_client()
    inside = client.get("/readyz").get_json()  # the test client is 127.0.0.1, in METRICS_ALLOW
    assert inside["auth"] == {"enabled": True} and "checks" in inside
    outside = client.get("/readyz", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert set(outside.get_json()) == {"status"}
