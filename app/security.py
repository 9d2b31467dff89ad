"""Security headers on every response of the app: the web pages, the JSON API, error answers and
static files alike."""

import re
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response


def content_security_policy(form_targets: str = "") -> str:
    """`form_targets`: origins besides this one that a form may lead to (the sign-in provider,
    where the sign-out form ends: browsers check form-action on every redirect of a submission)."""
    return (
        f"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'{form_targets}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


CONTENT_SECURITY_POLICY = content_security_policy()

# Logged at every start with AUTH_ENABLED=false, and in /readyz's details.
AUTH_OFF_WARNING = ("AUTH_ENABLED=false: authentication is off, and anyone who can reach this service reads "
                    "every order in full, personal data included. Only for a closed network; "
                    "see README, Security.")

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def allowed_networks(setting: str) -> list[IPv4Network | IPv6Network]:
    """METRICS_ALLOW's addresses and CIDR ranges (spaces or commas between them); ValueError for
    anything else. The edge's allow rules (devstack/edge_config.py) come from here too."""
    networks = []
    for entry in re.split(r"[\s,]+", setting.strip()):
        if entry:
            try:
                networks.append(ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"METRICS_ALLOW: {entry!r} is not an address or CIDR range") from None
    return networks


def is_allowed(address: str, networks: list[IPv4Network | IPv6Network]) -> bool:
    try:
        client = ip_address(address)
    except ValueError:
        return False
    return any(client in network for network in networks)


def page_content_security_policy(config: Mapping[str, Any]) -> str:
    """The pages' policy: with authentication on, forms may also end at the provider."""
    if not config["AUTH_ENABLED"]:
        return CONTENT_SECURITY_POLICY
    issuer = urlsplit(config["AUTH_ISSUER"])
    return content_security_policy(f" {issuer.scheme}://{issuer.netloc}")


def init_security_headers(app: Flask) -> None:
    """Add SECURITY_HEADERS to every response. after_request hooks also run for the responses of
    error handlers, so a 404 or a 500 carries them too. Pages may also post forms that end at the
    sign-in provider (signing out), when authentication is on."""
    page_policy = page_content_security_policy(app.config)

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        if response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = page_policy
        return response
