"""Bearer tokens: who is calling, checked against the provider's published keys (JWKS) with PyJWT.

A token is accepted when its signature verifies with one of the provider's keys under an
asymmetric algorithm of AUTH_ALGORITHMS, its `iss` is AUTH_ISSUER, its `aud` holds AUTH_AUDIENCE,
and `exp` (required) and `nbf` (when present) hold within AUTH_LEEWAY_S. Everything that can be
refused without the keys (a missing or oversized header, a malformed token, `alg: none`, an HMAC
algorithm, no `kid`) is refused before the keys are looked at, so garbage never reaches the
provider.

The keys are fetched once and kept. An unknown `kid` (the provider rotated its keys) fetches them
again, at most once per AUTH_JWKS_REFRESH_S. Keys older than KEYS_MAX_AGE_S are fetched again by
the first request that finds them so, while the others go on with the keys already known. A
provider that can't be reached costs that one request at most AUTH_PROVIDER_TIMEOUT_S (the others
meanwhile use the keys already known, or are told at once that the token can't be checked now:
503), never a 500 or a thread held for long.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient

from app.auth.provider import Provider, ProviderUnavailable
from app.metrics import KEY_FETCHES

log = logging.getLogger(__name__)

ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                        "EdDSA"})
# A provider's keys are re-read this often even when every kid is known (revoked keys go away).
KEYS_MAX_AGE_S = 300
REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's subject, the client it was issued to, its scopes, and when it
    stops being valid (Unix seconds, leeway included)."""

    subject: str
    client_id: str
    scopes: frozenset[str]
    valid_until: float

    def may(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: the HTTP status, the RFC 6750 error code (None for "no token at
    all", which RFC 6750 answers without one) and a message for the caller."""

    status: int
    error: str | None
    message: str

    @property
    def code(self) -> str:
        return self.error or "missing_token"


NO_TOKEN = Refusal(401, None, "this needs a bearer token: Authorization: Bearer <access token>")


def invalid(message: str) -> Refusal:
    return Refusal(401, "invalid_token", message)


def allowed_algorithms(setting: str) -> tuple[str, ...]:
    """AUTH_ALGORITHMS as a tuple; ValueError for a symmetric one, `none`, or an unknown name."""
    names = tuple(name for name in setting.replace(",", " ").split() if name)
    wrong = [name for name in names if name not in ASYMMETRIC]
    if wrong or not names:
        raise ValueError(f"AUTH_ALGORITHMS={setting!r}: only asymmetric algorithms are allowed "
                         f"({', '.join(sorted(ASYMMETRIC))}); not {', '.join(wrong) or 'nothing'}")
    return names


class KeySet:
    """The provider's signing keys by kid, fetched with PyJWKClient (which parses the JWKS and
    refuses keys it can't use), kept, and refreshed under the rules in the module's docstring."""

    def __init__(self, provider: Provider, refresh_s: float) -> None:
        self._provider = provider
        self._refresh_s = refresh_s
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = float("-inf")
        self._tried_at = float("-inf")
        self._lock = threading.Lock()

    def key(self, kid: str) -> PyJWK | None:
        """The key for `kid`, or None if the provider has none such. ProviderUnavailable when the
        keys can't be had and none is known for `kid`."""
        key = self._keys.get(kid)
        if key is not None and time.monotonic() - self._fetched_at <= KEYS_MAX_AGE_S:
            return key
        # Unknown: wait for a fetch in flight, or make one if the last was long enough ago.
        # Known but old: refresh it unless another request is doing so, and use it meanwhile.
        self._fetch(wait=key is None)
        if not self._keys:
            raise ProviderUnavailable("the provider's keys could not be fetched")
        return self._keys.get(kid)

    def _may_fetch(self) -> bool:
        return time.monotonic() - self._tried_at >= self._refresh_s

    def _fetch(self, wait: bool) -> None:
        # One fetch at a time. A request that has a key (a stale one) never waits for it; one that
        # has none waits for the fetch in flight, at most its timeout.
        if not self._lock.acquire(blocking=wait, timeout=self._provider.timeout_s + 1 if wait else -1):
            return
        try:
            if not self._may_fetch():  # fetched (or failed) just now, maybe while this one waited
                return
            self._tried_at = time.monotonic()
            try:
                client = PyJWKClient(self._provider.jwks_uri(), cache_jwk_set=False,
                                     timeout=self._provider.timeout_s)
                keys = {key.key_id: key for key in client.get_signing_keys()}
            except (jwt.PyJWKClientError, jwt.exceptions.PyJWKSetError, ProviderUnavailable) as exc:
                KEY_FETCHES.labels("failed").inc()
                log.warning("the provider's keys could not be fetched (%s); %s", exc,
                            "keeping the ones known" if self._keys else "tokens can't be checked until then")
                return
            KEY_FETCHES.labels("ok").inc()
            self._keys, self._fetched_at = keys, time.monotonic()
            log.info("the provider's signing keys: %s", ", ".join(sorted(keys)) or "none")
        finally:
            self._lock.release()


class Authenticator:
    """Turns an Authorization header into a Principal or a Refusal."""

    def __init__(self, config: Mapping[str, Any], provider: Provider) -> None:
        self.algorithms = allowed_algorithms(config["AUTH_ALGORITHMS"])
        self.issuer = config["AUTH_ISSUER"]
        self.audience = config["AUTH_AUDIENCE"]
        self.scope_claim = config["AUTH_SCOPE_CLAIM"]
        self.leeway_s = config["AUTH_LEEWAY_S"]
        # The edge refuses longer header lines (431); the app holds to the same limit.
        self.max_header_bytes = config["EDGE_MAX_HEADER_BYTES"]
        self.keys = KeySet(provider, config["AUTH_JWKS_REFRESH_S"])

    def authenticate(self, authorization: str | None) -> Principal | Refusal:
        if not authorization:
            return NO_TOKEN
        if len(authorization) > self.max_header_bytes:
            return Refusal(401, "invalid_request",
                           f"the Authorization header is over {self.max_header_bytes} bytes")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Refusal(401, "invalid_request", "the Authorization header must be: Bearer <access token>")
        try:
            return self.verify(token.strip())
        except ProviderUnavailable:
            return Refusal(503, "temporarily_unavailable",
                           "the token can't be checked right now (the provider is unreachable); retry soon")

    def verify(self, token: str) -> Principal | Refusal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            return invalid("the token is not a JWT")
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in self.algorithms:
            # Never the token's own `alg` in the message: the edge writes the message into its
            # JSON unescaped, and a header can't carry every character.
            accepted = ", ".join(self.algorithms)
            return invalid(f"the token's algorithm is not one of AUTH_ALGORITHMS ({accepted})")
        if not isinstance(kid, str) or not kid:
            return invalid("the token names no key (kid)")
        key = self.keys.key(kid)
        if key is None:
            return invalid("the token is signed with a key the provider does not have")
        try:
            claims = jwt.decode(token, key=key, algorithms=list(self.algorithms), audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway_s,
                                options={"require": REQUIRED_CLAIMS, "strict_aud": False})
        except jwt.ExpiredSignatureError:
            return invalid("the token has expired")
        except jwt.ImmatureSignatureError:
            return invalid("the token is not valid yet")
        except jwt.InvalidAudienceError:
            return invalid("the token is not meant for this service (aud)")
        except jwt.InvalidIssuerError:
            return invalid("the token comes from another issuer (iss)")
        except jwt.InvalidTokenError as exc:
            return invalid(f"the token is not valid: {type(exc).__name__}")
        return self.principal(claims)

    def principal(self, claims: Mapping[str, Any]) -> Principal:
        scopes = claims.get(self.scope_claim) or ""
        if isinstance(scopes, str):
            scopes = scopes.split()
        client_id = claims.get("client_id") or claims.get("azp") or ""
        return Principal(str(claims["sub"]), str(client_id),
                         frozenset(s for s in scopes if isinstance(s, str)),
                         float(claims["exp"]) + self.leeway_s)
