"""Durations, prices, currencies and thresholds: what each accepts, what it refuses and the words
it refuses with, and how money is shown. The control API's bodies use the same parsers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from workbench.wire.control import AddHostRequest, HostSettingsRequest, IdleRuleRequest
from workbench.wire.units import (
    format_duration,
    from_micros,
    money,
    parse_currency,
    parse_duration,
    parse_price,
    parse_threshold,
    to_micros,
)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30m", 1800), ("1h30m", 5400), ("7d", 604800), ("2w", 1209600), ("45s", 45), ("90", 90),
    (" 1h 30m ", 5400), ("1.5h", 5400), ("1H", 3600), (1800, 1800), (2.5, 2.5),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "says"), [
    ("soon", "is not a duration"), ("30x", "is not a duration"), ("", "is not a duration"),
    ("m30", "is not a duration"), ("-5m", "is not a duration"), ("0", "more than zero"),
    ("0m", "more than zero"), (0, "more than zero"), (True, "not a boolean"), (None, "not NoneType"),
    ("100000w", "ten years"), (float("nan"), "more than zero"),
])
def test_bad_durations_say_what_is_accepted(text: object, says: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_duration(text)
    assert says in str(refused.value)
    assert "30m" in str(refused.value) or says in ("ten years",)


def test_durations_read_back() -> None:
    assert [format_duration(s) for s in (0, 45, 1800, 5400, 604800, 90061)] == [
        "0s", "45s", "30m", "1h30m", "7d", "1d1h"]


@pytest.mark.parametrize(("text", "price"), [
    ("2.40", Decimal("2.40")), ("0", Decimal(0)), (" 12 ", Decimal(12)), ("$0.35", Decimal("0.35")),
    (2.4, Decimal("2.4")), (3, Decimal(3)), ("0.000001", Decimal("0.000001")),
])
def test_prices(text: object, price: Decimal) -> None:
    assert parse_price(text) == price


@pytest.mark.parametrize(("text", "says"), [
    ("-1", "cannot be negative"), ("-0.01", "cannot be negative"), ("abc", "is not a price"),
    ("2,40", "is not a price"), ("", "is not a price"), ("nan", "is not a price"), ("inf", "is not a price"),
    ("1e9", "monthly"), ("0.0000001", "six decimals"), (True, "not a boolean"), (None, "is not a price"),
])
def test_bad_prices_say_why(text: object, says: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_price(text)
    assert says in str(refused.value)


def test_currencies_and_thresholds() -> None:
    assert parse_currency("eur") == "EUR" and parse_currency(" USD ") == "USD"
    for bad in ("euro", "U$D", "", 5):
        with pytest.raises(ValueError, match="three-letter code"):
            parse_currency(bad)
    assert parse_threshold("5") == 5 and parse_threshold("12.5%") == 12.5 and parse_threshold(0) == 0
    assert parse_threshold(100) == 100
    for bad, says in (("150", "0 to 100"), (-1, "0 to 100"), ("lots", "not a utilization"),
                      (True, "not a boolean"), ("nan", "0 to 100")):
        with pytest.raises(ValueError) as refused:
            parse_threshold(bad)
        assert says in str(refused.value)


def test_micro_units_are_exact() -> None:
    for text in ("2.40", "0.000001", "999999.999999", "0.1", "0.2"):
        assert from_micros(to_micros(parse_price(text))) == Decimal(text)
    assert to_micros(Decimal("0.1")) + to_micros(Decimal("0.2")) == to_micros(Decimal("0.3"))


def test_money_as_shown() -> None:
    assert money(Decimal("3.6")) == "$3.60"
    assert money(Decimal("12.505"), "EUR") == "€12.50"  # half to even, once, when shown
    assert money(Decimal("7"), "CHF") == "7.00 CHF"
    assert money(Decimal("0.0042")) == "$0.0042"  # a cheap API does not read as free
    assert money(Decimal(0)) == "$0.00" and money(None) == "-"
    assert money(Decimal("3.375"), places=4) == "$3.3750"


def test_the_control_api_bodies_use_the_same_parsers() -> None:
    assert HostSettingsRequest.model_validate({"price": "2.40"}).price == Decimal("2.40")
    assert IdleRuleRequest.model_validate({"after": "1h30m"}).after == 5400
    base = {"name": "box", "target": "me@box"}
    assert AddHostRequest.model_validate({**base, "price": 1.25, "currency": "eur"}).currency == "EUR"
    for body, says in (({"price": "-1"}, "cannot be negative"), ({"price": "abc"}, "is not a price"),
                       ({"currency": "dollars"}, "three-letter")):
        with pytest.raises(ValidationError) as refused:
            HostSettingsRequest.model_validate(body)
        assert says in str(refused.value)
    for body, says in (({"after": "soon"}, "is not a duration"), ({"util_threshold": 101}, "0 to 100")):
        with pytest.raises(ValidationError) as refused:
            IdleRuleRequest.model_validate(body)
        assert says in str(refused.value)
