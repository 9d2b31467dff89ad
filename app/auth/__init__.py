"""Who may see an order: bearer tokens for the API (checked in front of the app, and by the edge
through it), sign-in for the web page, the personal fields masked without `orders:pii`, and an
audit line per order read. README, "Security", says who may see what."""

import logging
import secrets
from collections.abc import Callable

from flask import Flask

from app.auth.policy import check_coverage
from app.security import AUTH_OFF_WARNING

log = logging.getLogger(__name__)

AUTHENTICATOR = "authenticator"


def init_auth(app: Flask) -> None:
    """Sign-in routes and the pieces the access layer needs. Nothing is fetched from the provider
    here: its metadata and keys are fetched when first needed."""
    from app.auth.provider import Provider
    from app.auth.tokens import Authenticator
    from app.auth.web import init_sign_in

    if not app.config.get("SECRET_KEY"):
        # One key per process: under gunicorn, gunicorn.conf.py makes one for all the workers.
        app.config["SECRET_KEY"] = secrets.token_urlsafe(32)
        log.debug("SECRET_KEY is not set: a random one signs this process's sessions")
    provider = Provider(app.config["AUTH_ISSUER"], app.config["AUTH_PROVIDER_TIMEOUT_S"])
    app.extensions["auth_provider"] = provider
    app.extensions[AUTHENTICATOR] = Authenticator(app.config, provider)
    init_sign_in(app)
    if not app.config["AUTH_ENABLED"]:
        log.warning(AUTH_OFF_WARNING)


def with_access_check(app: Flask, wsgi_app: Callable) -> Callable:
    """`wsgi_app` (the fast path and Flask) behind the access layer; unchanged when auth is off.
    Every route must have a policy first."""
    check_coverage(app)
    if not app.config["AUTH_ENABLED"]:
        return wsgi_app
    from app.auth.layer import AccessLayer
    from app.cache import OrderCache

    config = app.config
    masked = OrderCache(config["CACHE_THRESHOLD"], config["CACHE_MAX_BYTES"], config["CACHE_TTL"], 0)
    return AccessLayer(wsgi_app, app, app.extensions[AUTHENTICATOR], masked)
