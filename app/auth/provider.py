"""The OpenID Connect provider's metadata (its discovery document), fetched when first needed and
kept; a provider that can't be reached is tried again at most every RETRY_S seconds, and never
makes a caller wait longer than AUTH_PROVIDER_TIMEOUT_S."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

RETRY_S = 5
MAX_DOCUMENT_BYTES = 1 << 20


def discovery_url(issuer: str) -> str:
    """OpenID Connect Discovery: the issuer (without a trailing slash) + /.well-known/..."""
    return f"{issuer.rstrip('/')}/.well-known/openid-configuration"


class ProviderUnavailable(Exception):
    """The provider could not be reached (or answered nonsense) just now."""


class Provider:
    def __init__(self, issuer: str, timeout_s: float) -> None:
        self.issuer = issuer
        self.timeout_s = timeout_s
        self._metadata: dict[str, Any] | None = None
        self._failed_at = float("-inf")
        self._last_error = ""
        self._lock = threading.Lock()

    @property
    def discovery_url(self) -> str:
        return discovery_url(self.issuer)

    def metadata(self) -> dict[str, Any]:
        if self._metadata is not None:
            return self._metadata
        if not self._lock.acquire(timeout=self.timeout_s + 1):
            raise ProviderUnavailable("the provider's metadata is being fetched by another request")
        try:
            if self._metadata is None:
                if time.monotonic() - self._failed_at < RETRY_S:
                    raise ProviderUnavailable(self._last_error)
                self._metadata = self._fetch()
            return self._metadata
        finally:
            self._lock.release()

    def _fetch(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(self.discovery_url, timeout=self.timeout_s) as response:
                document = json.loads(response.read(MAX_DOCUMENT_BYTES))
        except (OSError, ValueError, urllib.error.URLError) as exc:
            self._failed_at, self._last_error = time.monotonic(), f"{self.discovery_url}: {exc}"
            raise ProviderUnavailable(self._last_error) from None
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            self._failed_at = time.monotonic()
            self._last_error = f"{self.discovery_url} is not the discovery document of {self.issuer}"
            raise ProviderUnavailable(self._last_error)
        return document

    def jwks_uri(self) -> str:
        return self.metadata()["jwks_uri"]

    def token_endpoint(self) -> str:
        return self.metadata()["token_endpoint"]
