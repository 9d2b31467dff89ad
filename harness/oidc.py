"""The real OpenID Connect provider that `make infra` starts (Keycloak, devstack/keycloak.py), from
outside: tokens by client credentials, a person's sign-in through its login form, and its admin
API (to add and remove signing keys).

Nothing here signs or checks a token for the service: the tests get their tokens from the provider,
and the service checks them against the provider's published keys."""

from __future__ import annotations

import html
import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from config import Config, order_service_home

TIMEOUT_S = 10


def dev_credentials() -> dict[str, str]:
    """The development secrets `make infra` made (devstack/keycloak.py)."""
    path = order_service_home() / "keycloak" / "dev-credentials.json"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: the provider was not started by `make infra`")
    return json.loads(path.read_text())


def token_endpoint(issuer: str = Config.AUTH_ISSUER) -> str:
    return f"{issuer}/protocol/openid-connect/token"


def client_token_response(scopes: tuple[str, ...], client_id: str = Config.AUTH_CLI_CLIENT_ID,
                          secret: str = Config.AUTH_CLI_CLIENT_SECRET) -> dict:
    response = requests.post(token_endpoint(), auth=(client_id, secret), timeout=TIMEOUT_S,
                             data={"grant_type": "client_credentials",
                                   **({"scope": " ".join(scopes)} if scopes else {})})
    response.raise_for_status()
    return response.json()


class Tokens:
    """Access tokens by client credentials, one per set of scopes, fetched again a minute before
    they expire (the realm's tokens live 5 minutes; a test session can last longer)."""

    def __init__(self) -> None:
        self._tokens: dict[frozenset[str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, *scopes: str) -> str:
        key = frozenset(scopes)
        with self._lock:
            token, until = self._tokens.get(key, ("", 0.0))
            if time.time() > until - 60:
                body = client_token_response(tuple(sorted(scopes)))
                token, until = body["access_token"], time.time() + body["expires_in"]
                self._tokens[key] = (token, until)
            return token

    def header(self, *scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self(*scopes)}"}


_LOGIN_FORM = re.compile(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', re.S)


def log_in_at_provider(authorize_url: str, username: str, password: str,
                       browser: requests.Session | None = None) -> str:
    """Follow the provider's login form for `username` as a browser would, from the authorization
    URL the service redirected to; returns the URL the provider sends the browser back to (the
    service's callback, with code and state)."""
    browser = browser or requests.Session()
    page = browser.get(authorize_url, timeout=TIMEOUT_S)
    page.raise_for_status()
    # Keycloak marks its cookies Secure even over http; browsers keep them for 127.0.0.1 and
    # localhost (secure contexts), requests only over https: as a browser does, then.
    for cookie in browser.cookies:
        cookie.secure = False
    form = _LOGIN_FORM.search(page.text)
    assert form, f"no login form at {authorize_url}: {page.text[:300]}"
    answer = browser.post(html.unescape(form.group(1)), data={"username": username, "password": password,
                                                              "credentialId": ""},
                          allow_redirects=False, timeout=TIMEOUT_S)
    assert answer.status_code == 302, f"the provider did not accept {username}: {answer.status_code}"
    return answer.headers["Location"]


def user_password(username: str) -> str:
    return dev_credentials()[f"user:{username}"]


@dataclass
class Admin:
    """The provider's admin REST API, as the development admin."""

    base: str
    realm: str
    token: str

    @classmethod
    def connect(cls, issuer: str = Config.AUTH_ISSUER) -> Admin:
        base, _, realm = issuer.rpartition("/realms/")
        response = requests.post(f"{base}/realms/master/protocol/openid-connect/token", data={
            "grant_type": "password", "client_id": "admin-cli", "username": "admin",
            "password": dev_credentials()["admin"]}, timeout=TIMEOUT_S)
        response.raise_for_status()
        return cls(base, realm, response.json()["access_token"])

    def _url(self, path: str) -> str:
        return f"{self.base}/admin/realms/{self.realm}{path}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def realm_id(self) -> str:
        response = requests.get(self._url(""), headers=self._headers(), timeout=TIMEOUT_S)
        response.raise_for_status()
        return response.json()["id"]

    def add_rsa_key(self, name: str, private_key_pem: str, priority: int) -> str:
        """An imported RS256 signing key (a key provider component); returns its component id.
        The provider publishes it in its JWKS at once."""
        response = requests.post(self._url("/components"), headers=self._headers(), timeout=TIMEOUT_S, json={
            "name": name, "providerId": "rsa", "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": self.realm_id(),
            "config": {"privateKey": [private_key_pem], "priority": [str(priority)], "enabled": ["true"],
                       "active": ["true"], "algorithm": ["RS256"]}})
        assert response.status_code == 201, f"adding a key: {response.status_code} {response.text}"
        return urlsplit(response.headers["Location"]).path.rpartition("/")[2]

    def remove_component(self, component_id: str) -> None:
        requests.delete(self._url(f"/components/{component_id}"), headers=self._headers(), timeout=TIMEOUT_S)

    def kid_of(self, component_id: str) -> str:
        response = requests.get(self._url("/keys"), headers=self._headers(), timeout=TIMEOUT_S)
        response.raise_for_status()
        return next(key["kid"] for key in response.json()["keys"] if key.get("providerId") == component_id)


def callback_query(location: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def keycloak_home() -> Path:
    return order_service_home() / "keycloak"
