"""Tenant facts are cached for ingest: a change made in this process applies to the very next
event; one made by another process within the cache's TTL."""

from __future__ import annotations

import time

import pytest

from dunwell.bootstrap import assign_policy, build
from dunwell.settings import Settings
from dunwell.store.unit_of_work import UnitOfWork
from factories import failed_body, post

pytestmark = pytest.mark.integration


def _policy(services, result) -> str:
    with UnitOfWork(services.sessions) as uow:
        return uow.cases.get("acme", result.case_ids[0]).policy_name


def test_a_policy_assigned_here_applies_to_the_next_event(services, clock):
    first = post(services, failed_body("e1", clock.now(), invoice="in_1"))
    assert _policy(services, first) == "default"  # the tenant's facts are cached now
    assign_policy(services, "acme", None, "baseline-fixed")
    second = post(services, failed_body("e2", clock.now(), invoice="in_2"))
    assert _policy(services, second) == "baseline-fixed"


def test_a_policy_assigned_by_another_process_applies_within_the_ttl(services, clock):
    services.tenants.ttl = 0.3
    first = post(services, failed_body("e1", clock.now(), invoice="in_1"))
    assert _policy(services, first) == "default"
    other = build(Settings(database_url=services.settings.database_url), clock=clock)
    try:
        assign_policy(other, "acme", None, "baseline-fixed")
    finally:
        other.close()
    time.sleep(0.4)
    second = post(services, failed_body("e2", clock.now(), invoice="in_2"))
    assert _policy(services, second) == "baseline-fixed"
