"""Signing people in to the web page: OpenID Connect's authorization-code flow with PKCE (S256),
through Authlib's Flask client, against AUTH_ISSUER with the AUTH_WEB_CLIENT_ID client.

- GET /auth/signin?next=/...&pii=1 sends the browser to the provider (`pii=1` also asks for
  orders:pii, which the provider grants only to users allowed it). `next` must be a path of this
  site: anything else (another host, `//host`, a backslash) becomes `/`, so the sign-in is no
  open redirect.
- GET /auth/callback takes the provider's answer. Authlib checks the `state` kept in the session
  (a callback this browser did not start is refused: no login CSRF), sends the PKCE verifier and
  checks the ID token; the access token is then checked like any bearer token (app/auth/tokens.py)
  and its subject, name and scopes go into the session, until the token's expiry.
- POST /auth/signout, with the session's CSRF token, ends the session here and at the provider.

The session cookie is HttpOnly, SameSite=Lax, and Secure whenever the request came over HTTPS (the
edge's X-Forwarded-Proto). A provider that can't be reached gets a page that says so (503).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface

from app.auth.policy import LIST, PII, READ
from app.auth.provider import ProviderUnavailable, discovery_url
from app.auth.tokens import Principal, Refusal

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__, url_prefix="/auth")

OAUTH = "oauth_client"
BASE_SCOPES = f"openid profile {READ} {LIST}"
USER = "user"
CSRF = "csrf"


class SchemeAwareSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, Secure when the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or bool(app.config["SESSION_COOKIE_SECURE"])


def init_sign_in(app: Flask) -> None:
    app.config.update(SESSION_COOKIE_NAME="order_service_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax")
    app.session_interface = SchemeAwareSessions()
    oauth = OAuth(app)
    oauth.register(
        "provider",
        client_id=app.config["AUTH_WEB_CLIENT_ID"],
        client_secret=app.config["AUTH_WEB_CLIENT_SECRET"],
        server_metadata_url=discovery_url(app.config["AUTH_ISSUER"]),
        client_kwargs={"scope": BASE_SCOPES, "code_challenge_method": "S256",
                       "default_timeout": app.config["AUTH_PROVIDER_TIMEOUT_S"]},
    )
    app.extensions[OAUTH] = oauth
    app.register_blueprint(bp)

    @app.context_processor
    def signed_in_user() -> dict[str, Any]:
        enabled = current_app.config["AUTH_ENABLED"]
        return {"auth_enabled": enabled, "user": session_user() if enabled else None,
                "csrf_token": session.get(CSRF, "")}


def safe_next(target: str | None) -> str:
    """A path of this site to go back to after signing in, or "/"."""
    if not target or "\\" in target or not target.isprintable():
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def session_user() -> dict[str, Any] | None:
    user = session.get(USER)
    if not isinstance(user, dict) or user.get("until", 0) <= time.time():
        return None
    return user


def page_principal() -> Principal | None:
    user = session_user()
    if user is None:
        return None
    return Principal(user["sub"], user["client"], frozenset(user["scopes"]), user["until"])


def message(status: int, heading: str, text: str) -> Response:
    """A page in the web page's layout (its message.html) that says what happened."""
    response = make_response(render_template("message.html", heading=heading, message=text, query="",
                                             autofocus=False), status)
    response.headers["Cache-Control"] = "no-store"
    return response


def provider_down() -> Response:
    return message(503, "Sign-in is unavailable right now",
                   "The sign-in service can't be reached at the moment. Please try again in a minute.")


@bp.get("/signin")
def signin():
    session["next"] = safe_next(request.args.get("next"))
    scope = BASE_SCOPES + (f" {PII}" if request.args.get("pii") == "1" else "")
    client = current_app.extensions[OAUTH].provider
    try:
        return client.authorize_redirect(url_for("auth.callback", _external=True), scope=scope)
    except (requests.RequestException, ValueError, KeyError) as exc:
        log.warning("sign-in: the provider can't be reached: %s", exc)
        return provider_down()


@bp.get("/callback")
def callback():
    client = current_app.extensions[OAUTH].provider
    try:
        token = client.authorize_access_token()
    except OAuthError as exc:
        log.info("sign-in refused: %s", exc.error)
        return message(400, "This sign-in could not be completed",
                       "The sign-in link is not valid here (it may be old, or started in another browser). "
                       "Please sign in again.")
    except (requests.RequestException, ValueError) as exc:
        log.warning("sign-in: the provider can't be reached: %s", exc)
        return provider_down()
    try:
        principal = current_app.extensions["authenticator"].verify(token["access_token"])
    except ProviderUnavailable:
        return provider_down()
    if isinstance(principal, Refusal):
        log.warning("sign-in: the provider's access token was refused: %s", principal.message)
        return message(400, "This sign-in could not be completed", "Please sign in again.")
    next_page = safe_next(session.pop("next", None))
    session.clear()  # a new session for the signed-in user (no fixation)
    userinfo = token.get("userinfo") or {}
    session[USER] = {"sub": principal.subject, "client": principal.client_id,
                     "scopes": sorted(principal.scopes), "until": principal.valid_until,
                     "name": userinfo.get("preferred_username") or principal.subject}
    session["id_token"] = token.get("id_token", "")
    session[CSRF] = secrets.token_urlsafe(32)
    return redirect(next_page)


@bp.post("/signout")
def signout():
    sent = request.form.get(CSRF, "")
    expected = session.get(CSRF, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return message(403, "Sign-out refused",
                       "This sign-out did not come from this site's page. Use the Sign out button.")
    id_token = session.get("id_token", "")
    session.clear()
    back = url_for("web.index", _external=True)
    client = current_app.extensions[OAUTH].provider
    try:
        end_session = client.load_server_metadata().get("end_session_endpoint")
    except (requests.RequestException, ValueError):
        end_session = None
    if not end_session:
        return redirect(back)
    query = urlencode({"id_token_hint": id_token, "post_logout_redirect_uri": back,
                       "client_id": client.client_id})
    return redirect(f"{end_session}?{query}")


def page_access(scope: str) -> Principal | Response | None:
    """For a page that shows what `scope` allows: the signed-in person (None when authentication
    is off), or the answer to send instead (to the sign-in, or a 403 page)."""
    if not current_app.config["AUTH_ENABLED"]:
        return None
    principal = page_principal()
    if principal is None:
        return redirect(url_for("auth.signin", next=request.full_path.rstrip("?")))
    if not principal.may(scope):
        what = "look orders up" if scope == READ else "see the list of orders"
        return message(403, "Not allowed", f"Your account may not {what} ({scope}). Ask for access, "
                                           "or sign in with another account.")
    return principal
