"""Declines through real HTTP and the real CLI: the case shows its classification with the table
row that decided it, and unknown codes are counted and listed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from factories import failed_body

pytestmark = pytest.mark.e2e

DUNWELL = str(Path(sys.executable).with_name("dunwell"))


def _failed(event_id: str, at: Any, provider: str, code: str | None, **kw: Any) -> dict[str, Any]:
    body = failed_body(event_id, at, invoice=f"in_{event_id}", customer=f"cus_{event_id}", **kw)
    body["payment"]["provider"] = provider
    body["decline"]["provider_code"] = code
    return body


def _decline(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    posted = client.post("/v1/events", json=body)
    assert posted.status_code == 201, posted.text
    case = client.get(f"/v1/cases/{posted.json()['case_id']}").json()
    return dict(case["decline"])


@pytest.mark.parametrize(
    ("provider", "code", "file", "url"),
    [
        (
            "stripe",
            "insufficient_funds",
            "stripe_decline_codes.csv",
            "https://docs.stripe.com/declines/codes",
        ),
        (
            "adyen",
            "12",
            "adyen_refusal_reasons.csv",
            "https://docs.adyen.com/development-resources/refusal-reasons",
        ),
        (
            "braintree",
            "2001",
            "braintree_processor_responses.csv",
            "https://developer.paypal.com/braintree/docs/reference/general/processor-responses/"
            "authorization-responses",
        ),
    ],
)
def test_insufficient_funds_through_any_provider_shows_the_same_lane_and_its_source(
    client, clock, provider, code, file, url
):
    decline = _decline(client, _failed(f"evt_{provider}", clock.now(), provider, code))
    source = decline.pop("source")
    assert decline == {
        "provider": provider,
        "provider_code": code,
        "network_code": None,
        "network_category": "cannot_approve_now",
        "advice_code": None,
        "message": "declined",
        "lane": "retry_after_funds",
        "retry_allowed": True,
        "known": True,
        "rule": decline["rule"],
    }
    assert source["file"] == file and source["url"] == url and source["code"] == code
    assert isinstance(source["line"], int) and source["description"]


def test_a_visa_category_1_code_overrides_the_providers_softer_word(client, clock):
    body = _failed("evt_r0", clock.now(), "adyen", "Refused", network_code="R0", brand="visa")
    decline = _decline(client, body)
    assert decline["lane"] == "do_not_retry" and decline["retry_allowed"] is False
    assert decline["network_code"] == "R0" and decline["network_category"] == "never_approve"
    assert decline["source"]["file"] == "visa_decline_categories.csv"


def test_a_mastercard_never_advice_shows_the_advice_row(client, clock):
    body = _failed(
        "evt_mac", clock.now(), "braintree", "2000", advice_code="21", brand="mastercard"
    )
    decline = _decline(client, body)
    assert (decline["lane"], decline["advice_code"]) == ("do_not_retry", "21")
    assert decline["source"]["file"] == "mastercard_advice_codes.csv"


def test_decline_provider_names_the_code_table_when_it_is_not_the_payment_provider(client, clock):
    body = _failed("evt_gw", clock.now(), "stripe", "2004")
    body["decline"]["provider"] = "braintree"
    decline = _decline(client, body)
    assert decline["provider"] == "braintree"
    assert decline["lane"] == "update_payment_method"
    assert decline["source"]["file"] == "braintree_processor_responses.csv"


def test_an_unknown_code_is_conservative_counted_and_listed_by_the_cli(
    client, clock, database_url, tmp_path
):
    body = _failed("evt_new", clock.now(), "adyen", "999")
    decline = _decline(client, body)
    assert decline["lane"] == "retry_soon" and decline["known"] is False
    assert decline["source"] is None and "unknown code '999'" in decline["rule"]
    assert client.post("/v1/events", json=body).json()["duplicate"] is True  # counted once
    later = clock.now() + timedelta(minutes=5)
    _decline(client, _failed("evt_new2", later, "adyen", "999"))
    _decline(client, _failed("evt_new3", later, "checkout", "20051"))
    _decline(client, _failed("evt_known", later, "adyen", "12"))

    metrics = client.get("/metrics").text
    assert 'dunwell_unknown_decline_codes_total{provider="adyen"} 2.0' in metrics
    assert 'dunwell_unknown_decline_codes_total{provider="checkout"} 1.0' in metrics

    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNWELL_")}
    env["DUNWELL_DATABASE_URL"] = database_url
    result = subprocess.run(
        [DUNWELL, "codes", "unknown", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)["unknown_codes"]
    assert [(u["provider"], u["code"], u["count"]) for u in listed] == [
        ("adyen", "999", 2),
        ("checkout", "20051", 1),
    ]
    assert listed[0]["first_seen"] <= listed[0]["last_seen"]
    table = subprocess.run(
        [DUNWELL, "codes", "unknown"], env=env, capture_output=True, text=True, timeout=120
    )
    assert table.returncode == 0 and "20051" in table.stdout


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNWELL_")}
    return subprocess.run([DUNWELL, *args], env=env, capture_output=True, text=True, timeout=120)


def test_codes_resolve_prints_the_lane_with_its_source():
    shown = _cli("codes", "resolve", "--provider", "braintree", "--code", "2004", "--json")
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)
    assert (found["lane"], found["known"]) == ("update_payment_method", True)
    assert found["source"]["soft_hard"] == "hard"
    assert found["source"]["url"].startswith("https://developer.paypal.com/braintree/")

    waited = _cli(
        "codes", "resolve", "--provider", "adyen", "--code", "Not enough balance",
        "--advice-code", "27", "--brand", "mastercard",
    )  # fmt: skip
    assert waited.returncode == 0
    assert "retry_after_funds" in waited.stdout and "4 days" in waited.stdout
    assert "adyen_refusal_reasons.csv" in waited.stdout

    unknown = _cli("codes", "resolve", "--provider", "stripe", "--code", "brand_new", "--json")
    assert json.loads(unknown.stdout)["known"] is False


def test_codes_list_shows_every_row_or_one_providers():
    everything = json.loads(_cli("codes", "list", "--json").stdout)["codes"]
    adyen = json.loads(_cli("codes", "list", "--provider", "adyen", "--json").stdout)["codes"]
    assert {c["file"] for c in adyen} == {"adyen_refusal_reasons.csv"}
    assert len(everything) > len(adyen) >= 40
    assert all(c["url"].startswith("https://") for c in everything)
    wrong = _cli("codes", "list", "--provider", "nobody")
    assert wrong.returncode == 2 and "no code table" in wrong.stderr


def test_numeric_codes_are_accepted_as_adyen_and_braintree_send_them(client, clock):
    body = _failed("evt_num", clock.now(), "braintree", None)
    body["decline"]["provider_code"] = 2004
    body["decline"]["network_code"] = 54
    decline = _decline(client, body)
    assert (decline["provider_code"], decline["network_code"]) == ("2004", "54")
    assert decline["lane"] == "update_payment_method"
    assert decline["source"]["code"] == "2004"
