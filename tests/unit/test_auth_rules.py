"""The rules of app/auth that need no service: the masked form's edge cases, the algorithm
allow-list, the scope claim's two spellings, and the sign-in's return address."""

import pytest

from app.auth.masking import PERSONAL_FIELDS, mask_document
from app.auth.provider import Provider
from app.auth.tokens import Authenticator, allowed_algorithms
from app.auth.web import safe_next
from config import Config
from harness import contract_example


def test_masking_keeps_shape_and_empty_values_and_changes_nothing_else():
    order = contract_example()
    order["delivery"].update(name="Шерлок  Холмс", phone="123", email="x@y.z", zip="")
    masked = mask_document(order)
    assert masked["delivery"]["name"] == "Ш*****  Х****"
    assert masked["delivery"]["phone"] == "***"
    assert masked["delivery"]["email"] == "x***@y.z"
    assert masked["delivery"]["zip"] == ""
    assert order["delivery"]["name"] == "Шерлок  Холмс", "the input is not changed"
    personal = {f"{group}.{field}" for group, field in PERSONAL_FIELDS}
    for group in ("delivery", "payment"):
        for field, value in order[group].items():
            if f"{group}.{field}" not in personal:
                assert masked[group][field] == value
    assert list(masked) == list(order) and list(masked["delivery"]) == list(order["delivery"])


@pytest.mark.parametrize("setting", ["HS256", "none", "RS256 HS512", "", "rs256"])
def test_only_asymmetric_algorithms_can_be_configured(setting):
    with pytest.raises(ValueError, match="asymmetric"):
        allowed_algorithms(setting)


def test_the_scope_claim_is_a_setting_and_may_be_a_list():
    config = {name: getattr(Config, name) for name in dir(Config) if name.isupper()}
    for claim, value in (("scope", "orders:read orders:pii"), ("scp", ["orders:read", "orders:pii"])):
        authenticator = Authenticator({**config, "AUTH_SCOPE_CLAIM": claim}, Provider("http://x", 1))
        principal = authenticator.principal({"sub": "s", "exp": 1, claim: value, "azp": "client"})
        assert principal.scopes == {"orders:read", "orders:pii"} and principal.client_id == "client"


@pytest.mark.parametrize("target, expected", [
    ("/?id=abc", "/?id=abc"), ("/", "/"), (None, "/"), ("", "/"), ("https://evil.example/", "/"),
    ("//evil.example", "/"), ("/\\evil.example", "/"), ("evil.example", "/"), ("javascript:alert(1)", "/"),
    ("/\nLocation: x", "/"),
])
def test_the_sign_in_returns_to_paths_of_this_site_only(target, expected):
    assert safe_next(target) == expected
