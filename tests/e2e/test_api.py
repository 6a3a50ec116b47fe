"""The HTTP API over real HTTP on loopback, as a client integrates with it."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import httpx
import pytest

from factories import failed_body, skip_until, succeeded_body

pytestmark = pytest.mark.e2e


def test_requests_without_a_valid_key_get_401(base_url):
    assert httpx.get(f"{base_url}/v1/cases").status_code == 401
    wrong = httpx.get(f"{base_url}/v1/cases", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    assert httpx.get(f"{base_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{base_url}/readyz").json() == {"status": "ready"}


def test_a_failed_payment_becomes_a_case_with_an_explained_retry(client, clock):
    posted = client.post("/v1/events", json=failed_body("evt_1", clock.now()))
    assert posted.status_code == 201
    case_id = posted.json()["case_id"]

    case = client.get(f"/v1/cases/{case_id}").json()
    assert case["status"] == "open" and case["stage"] == "retrying"
    assert case["decline"]["lane"] == "retry_after_funds"
    assert case["attempts"] == [] and case["notices"] == []
    retry = next(a for a in case["plan"] if a["type"] == "retry")
    assert datetime.fromisoformat(retry["due_at"]) > clock.now()
    assert "after the first failure" in retry["reason"] and "Europe/Berlin" in retry["reason"]
    assert case["next_action"]["type"] in {"retry", "access"}
    assert case["next_action"]["reason"]

    again = client.post("/v1/events", json=failed_body("evt_1", clock.now()))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert client.get(f"/v1/cases/{case_id}").json() == case


def test_garbage_gets_a_clear_4xx_and_lands_in_dead_letters(client):
    garbage = client.post("/v1/events", content=b"{not json")
    assert garbage.status_code == 400 and garbage.json()["error"] == "malformed_json"

    body = failed_body("evt_x", datetime.fromisoformat("2026-11-02T09:00:00+00:00"))
    body["invoice"]["amount"] = 19.99  # money is integer minor units
    invalid = client.post("/v1/events", json=body)
    assert invalid.status_code == 422
    assert [p["field"] for p in invalid.json()["problems"]] == ["invoice.amount"]

    unknown = client.post("/v1/events", json={"id": "e", "type": "payment.exploded"})
    assert unknown.status_code == 422 and unknown.json()["problems"][0]["field"] == "type"

    listed = client.get("/v1/deadletters").json()["dead_letters"]
    ids = {
        garbage.json()["dead_letter_id"],
        invalid.json()["dead_letter_id"],
        unknown.json()["dead_letter_id"],
    }
    assert {d["id"] for d in listed} == ids
    kept = client.get(f"/v1/deadletters/{invalid.json()['dead_letter_id']}").json()
    assert json.loads(kept["raw_body"]) == body

    replay = client.post(f"/v1/deadletters/{garbage.json()['dead_letter_id']}/replay")
    assert replay.status_code == 422 and replay.json()["error"] == "replay_failed"


def test_a_card_number_is_refused_and_not_processed(client, clock):
    body = failed_body("evt_pan", clock.now(), token="4242 4242 4242 4242")
    refused = client.post("/v1/events", json=body)
    assert refused.status_code == 422
    assert refused.json()["problems"][0]["field"] == "payment.payment_method.token"
    assert client.get("/v1/cases").json()["cases"] == []


def test_cases_can_be_filtered(client, clock):
    client.post("/v1/events", json=failed_body("e1", clock.now(), invoice="in_a", customer="c_a"))
    client.post(
        "/v1/events",
        json=failed_body("e2", clock.now(), invoice="in_b", customer="c_b", code="expired_card"),
    )
    client.post("/v1/events", json=succeeded_body("e3", clock.now(), invoice="in_a"))

    def ids(**params):
        return [c["invoice_id"] for c in client.get("/v1/cases", params=params).json()["cases"]]

    assert ids(status="recovered") == ["in_a"]
    assert ids(lane="update_payment_method") == ["in_b"]
    assert ids(stage="awaiting_customer") == ["in_b"]
    assert ids(customer="c_a") == ["in_a"]
    assert client.get("/v1/cases/case_missing").status_code == 404


def test_the_timeline_explains_every_event_decision_and_action_in_order(client, services, clock):
    case_id = client.post("/v1/events", json=failed_body("e1", clock.now(), token="pm_ok")).json()[
        "case_id"
    ]
    skip_until(services, clock, clock.now() + __import__("datetime").timedelta(days=10))
    timeline = client.get(f"/v1/cases/{case_id}/timeline").json()
    entries = timeline["entries"]
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    kinds = {e["kind"] for e in entries}
    assert {"event", "decision", "action", "effect"} <= kinds
    assert all(e["explanation"] and e["rule"] for e in entries)
    rules = [e["rule"] for e in entries]
    assert "declines.classify" in rules and "attempt.start" in rules and "case.recovered" in rules
    charge = next(e for e in entries if e["kind"] == "effect" and e["rule"] == "charge")
    assert charge["data"]["effect"]["idempotency_key"] == charge["data"]["effect"]["attempt_id"]
    assert {a["status"] for a in timeline["actions"]} >= {"done", "canceled"}


def test_the_openapi_document_describes_the_api(base_url):
    spec = httpx.get(f"{base_url}/openapi.json").json()
    for path in (
        "/v1/events",
        "/v1/cases",
        "/v1/cases/{case_id}",
        "/v1/cases/{case_id}/timeline",
        "/v1/deadletters",
        "/healthz",
    ):
        assert path in spec["paths"]
    body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert "payment.failed" in body["schema"]["properties"]["type"]["enum"]


def test_metrics_count_events_and_show_the_due_backlog(client, base_url, clock):
    client.post("/v1/events", json=failed_body("e1", clock.now()))
    client.post("/v1/events", json=failed_body("e1", clock.now()))
    text = httpx.get(f"{base_url}/metrics").text
    assert 'dunwell_events_total{outcome="opened",type="payment.failed"} 1.0' in text
    assert 'dunwell_events_total{outcome="duplicate",type="payment.failed"} 1.0' in text
    # The grace step was taken by the opening decision; its access change waits for a worker
    # (none runs in this test) as a running action, and nothing scheduled is due yet.
    assert "dunwell_running_actions 1.0" in text
    assert "dunwell_due_backlog 0.0" in text
    # Fifteen days on, with still no worker: the retries and notices planned by then are due.
    clock.advance(timedelta(days=15))
    later = httpx.get(f"{base_url}/metrics").text
    backlog = re.search(r"^dunwell_due_backlog (\S+)$", later, re.MULTILINE)
    age = re.search(r"^dunwell_due_backlog_age_seconds (\S+)$", later, re.MULTILINE)
    assert backlog is not None and float(backlog.group(1)) >= 1
    assert age is not None and float(age.group(1)) > 0
