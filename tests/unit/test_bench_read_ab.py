"""bench.read_ab's variants: a mistyped one stops the run before the database is grown."""

import pytest

from bench.read_ab import parse_variant, parse_variants
from harness import ROOT


def test_a_variant_names_its_checkout_and_the_service_settings(tmp_path):
    variant = parse_variant(f"old:root={tmp_path},ACCESS_LOG=false")
    assert (variant.name, variant.root) == ("old", tmp_path.resolve())
    assert variant.settings == {"ACCESS_LOG": "false"}
    assert parse_variant("new:").root == ROOT.resolve()


@pytest.mark.parametrize("text", ["ceiling:", ":ACCESS_LOG=false", "old:root=/no/such/checkout"])
def test_a_variant_that_cannot_run_is_refused(text):
    with pytest.raises(SystemExit, match="bench.read_ab"):
        parse_variant(text)


def test_two_variants_of_one_name_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="a name of its own"):
        parse_variants(["new:", f"new:root={tmp_path}"])
