"""Issue 4's outage criterion in the simulator: with two providers and the first one down for
hours, retries move to the backup provider or later, no attempt is lost, and the harness's
own guardrail check (not the engine's) finds no violation."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from dunwell.sim import harness
from dunwell.sim.adapters import Recorder
from dunwell.sim.log import Entry, Kind, Outcome
from dunwell.sim.worlds.realistic import RealisticWorld
from dunwell.sim.worlds.variants import VARIANTS

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def run(request: pytest.FixtureRequest) -> tuple[RealisticWorld, list[Entry], harness.PolicyResult]:
    recorders: list[Recorder] = []
    worlds: list[RealisticWorld] = []

    class Keeping(Recorder):
        def __init__(self) -> None:
            super().__init__()
            recorders.append(self)

    def fresh() -> RealisticWorld:
        # Seed 2 draws six outages of 6-12 hours of psp_a, most in daytime.
        worlds.append(RealisticWorld(200, 30, 2, START, VARIANTS["realistic-two-psp"]))
        return worlds[-1]

    patch = pytest.MonkeyPatch()
    patch.setattr(harness, "Recorder", Keeping)
    try:
        result = harness.run_policy(fresh, "default")
    finally:
        patch.undo()
    return worlds[0], recorders[0].log, result


def test_the_world_has_two_providers_and_long_outages_of_the_first(run) -> None:
    world, log, _ = run
    assert world.routing is not None
    assert [r.provider for r in world.routing.routes] == ["psp_a", "psp_b"]
    windows = world.outages.provider
    assert len(windows) >= 3 and all(end - begin >= timedelta(hours=6) for begin, end in windows)
    failures = [e for e in log if e.kind is Kind.INITIAL_FAILURE]
    assert failures  # every case was opened from psp_a (the world's first provider)


def test_retries_move_to_the_backup_during_an_outage_and_come_back_after(run) -> None:
    world, log, result = run
    charges = [e for e in log if e.kind is Kind.CHARGE]
    inside = [e for e in charges if world.outages.provider_down(e.at)]
    by = Counter((e.provider, e.outcome) for e in inside)
    # During the outages the backup answers charges, and approves some of them.
    assert by[("psp_b", Outcome.APPROVED)] > 0 and by[("psp_b", Outcome.DECLINED)] > 0
    # psp_a answers nothing while down: what was sent to it errored.
    assert all(e.outcome is Outcome.ERROR for e in inside if e.provider == "psp_a")
    # After the first outage psp_a charges again (its circuit closed; it is the home).
    first_end = world.outages.provider[0][1]
    assert any(
        e.provider == "psp_a" and e.at > first_end and e.outcome is not Outcome.ERROR
        for e in charges
    )
    assert result.provider_errors > 0


def test_no_attempt_is_lost_and_no_network_rule_is_broken(run) -> None:
    world, log, result = run
    assert result.violations == dict.fromkeys(result.violations, 0)
    # An attempt that errored is not spent: it is answered later (re-sent under its id, to
    # the same provider or, when it never left, to the backup), or its case moved on (a
    # later answered charge for the invoice, a payment elsewhere, a cancellation).
    horizon_margin = world.horizon - timedelta(days=2)
    later: dict[str, list[Entry]] = {}
    for entry in log:
        key = entry.invoice_id or entry.customer_id
        later.setdefault(key, []).append(entry)
    lost = []
    for entry in log:
        if entry.kind is not Kind.CHARGE or entry.outcome is not Outcome.ERROR:
            continue
        if entry.at > horizon_margin:
            continue  # the run ends before it could be retried
        after = [e for e in later[entry.invoice_id or entry.customer_id] if e.at > entry.at]
        customer_acted = any(
            e.kind in (Kind.PAID_OUT_OF_BAND, Kind.CANCELED)
            for e in log
            if e.customer_id == entry.customer_id and e.at > entry.at
        )
        answered = any(e.kind is Kind.CHARGE and e.reached_network for e in after)
        if not (answered or customer_acted):
            lost.append(entry)
    assert not lost, lost[:3]
    # Errors are not network attempts: the harness counts each attempt id once, answered.
    answered_ids = {e.attempt_id for e in log if e.kind is Kind.CHARGE and e.reached_network}
    assert result.network_attempts == len(answered_ids)
