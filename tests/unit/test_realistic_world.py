"""The realistic world on its own (no engine): each behaviour it claims, checked by charging
and messaging its customers directly, the way the harness would."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dunwell.domain.events import CustomerAuthenticated, PaymentFailed, PaymentMethodUpdated
from dunwell.domain.money import Money
from dunwell.sim.protocol import ChargeRequest, ChargeStatus, NoticeRequest, World
from dunwell.sim.worlds import calendars, realistic
from dunwell.sim.worlds.calendars import PaySchedule, paydays
from dunwell.sim.worlds.realistic import RealisticWorld, card
from dunwell.sim.worlds.variants import REALISTIC, VARIANTS, Cause, Engagement

pytestmark = pytest.mark.unit

START = datetime(2026, 3, 2, tzinfo=UTC)
H = timedelta(hours=1)
_keys = itertools.count()


def _charge(world: RealisticWorld, cid: str, at: datetime, number: int = 1) -> ChargeStatus:
    c = world.customers[cid]
    request = ChargeRequest(
        attempt_id=f"a{next(_keys)}",
        idempotency_key=f"k{next(_keys)}",
        customer_id=cid,
        invoice_id=f"inv_{cid}_1",
        amount=Money(c.amount_minor, "USD"),
        provider="sim",
        payment_method=card(c, number),
    )
    return world.charge(request, at).status


def _answered(world: RealisticWorld, cid: str, at: datetime, number: int = 1) -> ChargeStatus:
    """The issuer's answer: a provider error (outage, timeout) is asked again an hour later,
    with the same customer state, as a technical retry would."""
    for shift in range(24):
        status = _charge(world, cid, at + shift * timedelta(minutes=1), number)
        if status is not ChargeStatus.ERROR:
            return status
    raise AssertionError("the provider never answered")


def _quiet(params=REALISTIC):  # type: ignore[no-untyped-def]
    """No outages: the behaviour under test is the customer's, not the provider's."""
    return replace(params, provider_outages_per_30d=0.0, issuer_outages_per_30d=0.0)


def test_the_realistic_worlds_conform_to_the_protocol() -> None:
    for params in VARIANTS.values():
        world = RealisticWorld(30, 20, 1, START, params)
        assert isinstance(world, World)
        events = world.events_due(world.horizon)
        failures = [e for e in events if isinstance(e, PaymentFailed)]
        assert len(failures) == 30
        assert all(START <= e.occurred_at <= world.horizon for e in events)
        assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)


def test_a_funds_customer_is_declined_before_payday_and_approved_after() -> None:
    world = RealisticWorld(400, 40, 2, START, _quiet())
    tested = approved_after = 0
    for c in world.customers.values():
        if c.cause is not Cause.FUNDS or c.broke:
            continue
        after = [p for p in c.paydays if p > c.first_failure_at + 2 * H]
        if not after or after[0] + 3 * H > world.horizon:
            continue
        payday = after[0]
        # Every hour from the failure to the payday: never approved.
        t = c.first_failure_at + H
        while t < payday - H:
            assert _answered(world, c.id, t) is ChargeStatus.DECLINED, (c.id, t)
            t += 6 * H
        tested += 1
        approved_after += _answered(world, c.id, payday + H) is ChargeStatus.APPROVED
    assert tested >= 30
    assert approved_after / tested > 0.75  # FUNDS_APPROVAL is 0.9 right after payday


def test_an_sca_failure_is_fixed_only_by_an_authentication() -> None:
    params = replace(_quiet(), causes=((Cause.SCA, 1),), engagement=((Engagement.ACT, 1),))
    world = RealisticWorld(40, 30, 3, START, params)
    sca = [c for c in world.customers.values() if c.cause is Cause.SCA]
    assert len(sca) >= 10  # the rest live where no SCA mandate applies
    world.events_due(world.horizon - 10 * timedelta(days=1))  # the first failures
    fixed = 0
    for c in sca:
        at = c.first_failure_at + 2 * H
        for hours in range(0, 72, 7):
            assert _answered(world, c.id, at + hours * H) is ChargeStatus.DECLINED
        # A generic notice does not say how to fix it; the clear one does, for this customer.
        notice = NoticeRequest(
            "n1", c.id, "authenticate_payment", "push", "authenticate", Money(1, "USD")
        )
        outcome = world.deliver(notice, at)
        if not outcome.later:
            continue
        (event,) = outcome.later
        assert isinstance(event, CustomerAuthenticated)
        assert event.occurred_at > at
        assert world.events_due(event.occurred_at) == [event]  # it happens, at its time
        after = [_answered(world, c.id, event.occurred_at + k * 5 * H) for k in range(1, 4)]
        fixed += ChargeStatus.APPROVED in after
    assert fixed >= 5


def test_an_expired_card_never_passes_and_the_new_one_does() -> None:
    params = replace(_quiet(), causes=((Cause.EXPIRED, 1),), account_updater_share=1.0)
    world = RealisticWorld(30, 30, 4, START, params)
    events = world.events_due(world.horizon)
    updates = {e.customer_id: e for e in events if isinstance(e, PaymentMethodUpdated)}
    assert len(updates) == 30  # the account updater replaced every card by itself
    approved_new = 0
    for cid, update in updates.items():
        later = update.occurred_at + H
        assert _answered(world, cid, later, number=1) is ChargeStatus.DECLINED
        approved_new += _answered(world, cid, later + H, number=2) is ChargeStatus.APPROVED
    assert approved_new >= 24


def test_a_payday_on_a_public_holiday_comes_the_business_day_before() -> None:
    # 3 July 2026 is a Friday and the observed Independence Day in the US.
    fridays = paydays(
        PaySchedule.WEEKLY,
        date(2026, 6, 29),
        date(2026, 7, 10),
        "US",
        ZoneInfo("America/New_York"),
        0,
        __import__("random").Random(0),
    )
    local = [d.astimezone(ZoneInfo("America/New_York")) for d in fridays]
    assert [d.date() for d in local] == [date(2026, 7, 2), date(2026, 7, 10)]
    assert all(d.hour == calendars.FUNDS_ARRIVE_HOUR for d in local)
    # The same rule with Germany's calendar: 3 July is an ordinary working day there.
    german = paydays(
        PaySchedule.WEEKLY,
        date(2026, 6, 29),
        date(2026, 7, 10),
        "DE",
        ZoneInfo("Europe/Berlin"),
        0,
        __import__("random").Random(0),
    )
    assert german[0].astimezone(ZoneInfo("Europe/Berlin")).date() == date(2026, 7, 3)


def test_holidays_move_money_in_the_world_and_nothing_the_engine_sees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """US weekly payers short of funds around 3 July 2026: with the holiday calendar, money is
    there on Thursday 2 July; without it, not before Friday. The events are the same."""
    start = datetime(2026, 6, 22, tzinfo=UTC)
    params = replace(
        _quiet(),
        zones=(("America/New_York", "US", 1),),
        pay={"*": ((PaySchedule.WEEKLY, 1),)},
        gig_share=0.0,
        causes=((Cause.FUNDS, 1),),
    )
    thursday_noon = datetime(2026, 7, 2, 16, tzinfo=UTC)  # 12:00 in New York

    def answers() -> tuple[list[object], dict[str, ChargeStatus]]:
        world = RealisticWorld(300, 20, 5, start, params)
        events = world.events_due(world.horizon)
        out = {}
        for c in world.customers.values():
            # Failed after the last payday before the holiday week, and not broke.
            if c.broke or not (datetime(2026, 6, 26, 12, tzinfo=UTC) < c.first_failure_at):
                continue
            if c.first_failure_at > thursday_noon - 2 * H:
                continue
            out[c.id] = _answered(world, c.id, thursday_noon)
        return [(type(e).__name__, e.id, e.occurred_at) for e in events], out

    events_with, with_holidays = answers()
    monkeypatch.setattr(calendars, "public_holidays", lambda country, year: frozenset())
    events_without, without_holidays = answers()
    assert events_with == events_without  # the engine would see exactly the same
    assert len(with_holidays) >= 10
    assert all(s is ChargeStatus.DECLINED for s in without_holidays.values())
    assert sum(s is ChargeStatus.APPROVED for s in with_holidays.values()) >= 5


def test_issuers_approve_less_at_night_in_the_customers_own_time() -> None:
    params = replace(_quiet(), causes=((Cause.ISSUER, 1),))
    world = RealisticWorld(300, 30, 6, START, params)
    night = day = 0
    for c in world.customers.values():
        if c.closes_at_charge is not None:
            continue
        zone = c.zone
        base = (c.first_failure_at + timedelta(days=2)).astimezone(zone).date()
        for d in range(5):
            when = datetime.combine(base + timedelta(days=d), datetime.min.time(), zone)
            night += _answered(world, c.id, when + 3 * H) is ChargeStatus.APPROVED
            day += _answered(world, c.id, when + 11 * H) is ChargeStatus.APPROVED
    assert day > night * 1.3, (day, night)


def test_customers_ignore_act_or_complain() -> None:
    params = replace(_quiet(), causes=((Cause.EXPIRED, 1),), account_updater_share=0.0)
    world = RealisticWorld(300, 40, 7, START, params)
    world.events_due(world.horizon - timedelta(days=25))
    by_kind: dict[Engagement, list[int]] = {e: [0, 0, 0] for e in Engagement}  # n, fix, cancel
    for c in world.customers.values():
        if c.bad_email:
            continue
        kinds = by_kind[c.engagement]
        kinds[0] += 1
        at = c.first_failure_at + H
        for k in range(4):
            notice = NoticeRequest(
                f"n{k}", c.id, "update_payment_method", "email", "x", Money(1, "USD")
            )
            for event in world.deliver(notice, at + k * 24 * H).later:
                kinds[1 if isinstance(event, PaymentMethodUpdated) else 2] += 1
    n, fix, cancel = by_kind[Engagement.IGNORE]
    assert n > 50 and fix == cancel == 0
    n, fix, cancel = by_kind[Engagement.ACT]
    assert n > 30 and fix / n > 0.9 and cancel == 0
    n, fix, cancel = by_kind[Engagement.COMPLAIN]
    assert n > 10 and cancel / n > 0.6
    n, fix, _ = by_kind[Engagement.READ]
    assert 0.2 < fix / n < 0.9


def test_a_provider_outage_fails_every_charge_and_ends() -> None:
    world = RealisticWorld(50, 30, 8, START, replace(REALISTIC, provider_outages_per_30d=6.0))
    windows = world.outages.provider
    assert windows
    begins, ends = windows[0]
    world.events_due(world.horizon)
    cids = list(world.customers)[:20]
    assert all(
        _charge(world, cid, begins + (ends - begins) / 2) is ChargeStatus.ERROR for cid in cids
    )
    after = [_charge(world, cid, ends + timedelta(minutes=1)) for cid in cids]
    assert sum(s is not ChargeStatus.ERROR for s in after) >= 17  # only the odd timeout


def test_one_customers_answer_does_not_depend_on_anyone_elses_charges() -> None:
    def answers(noise: bool) -> list[ChargeStatus]:
        world = RealisticWorld(60, 30, 9, START)
        world.events_due(world.horizon)
        if noise:
            for cid in list(world.customers)[1:]:
                for h in range(0, 200, 9):
                    _charge(world, cid, START + h * H)
        target = next(iter(world.customers))
        first = world.customers[target].first_failure_at
        return [_charge(world, target, first + h * 5 * H) for h in range(1, 60)]

    assert answers(noise=False) == answers(noise=True)


def test_same_seed_same_world_other_seed_other_world() -> None:
    def story(seed: int) -> list[object]:
        world = RealisticWorld(40, 30, seed, START)
        events = world.events_due(world.horizon)
        return [(e.id, e.occurred_at) for e in events]

    assert story(11) == story(11)
    assert story(11) != story(12)


def test_the_oracle_is_reachable_and_bounded() -> None:
    world = RealisticWorld(200, 45, 10, START)
    bound = world.oracle()
    assert bound.cases == 200
    assert 0.4 < bound.recoverable / bound.cases < 0.98
    # Fraud cases never recover, whatever a policy does.
    fraud = [c.id for c in world.customers.values() if c.cause is Cause.FRAUD]
    assert fraud and not any(
        world.recoverable(cid) for cid in fraud if world.customers[cid].pays_elsewhere_at is None
    )


def test_realistic_module_exposes_no_hidden_truth_through_events() -> None:
    world = RealisticWorld(20, 20, 12, START)
    for event in world.events_due(world.horizon):
        fields = set(type(event).__dataclass_fields__)
        assert not fields & {"payday", "paydays", "cause", "engagement", "approval"}
    assert realistic.ORACLE_WINDOW_DAYS == 21


def test_the_variants_are_other_worlds() -> None:
    def funds_paydays_per_30_days(name: str) -> float:
        world = RealisticWorld(600, 30, 13, START, VARIANTS[name])
        counts = [
            sum(
                c.first_failure_at < p <= c.first_failure_at + timedelta(days=30) for p in c.paydays
            )
            for c in world.customers.values()
            if c.cause is Cause.FUNDS
        ]
        return sum(counts) / len(counts)

    weekly, monthly = (
        funds_paydays_per_30_days("realistic-weekly-pay"),
        funds_paydays_per_30_days("realistic-monthly-pay"),
    )
    assert weekly > 3.5 and monthly < 1.6, (weekly, monthly)

    apac = RealisticWorld(200, 30, 13, START, VARIANTS["realistic-apac"])
    assert {c.country for c in apac.customers.values()} <= {"JP", "AU", "IN", "SG", "NZ"}

    def share(name: str, causes: set[Cause]) -> float:
        people = RealisticWorld(600, 30, 13, START, VARIANTS[name]).customers.values()
        return sum(c.cause in causes for c in people) / len(people)

    hard = {Cause.EXPIRED, Cause.LOST, Cause.SCA}
    assert share("realistic-hard-declines", hard) > share("realistic", hard) + 0.1


def _alone(world: RealisticWorld, cause: Cause, **hidden: object) -> list[str]:
    """Customers of `cause` nothing outside the charges can help: they ignore every message,
    never pay elsewhere or leave, and match `hidden`."""
    return [
        c.id
        for c in world.customers.values()
        if c.cause is cause
        and c.engagement is Engagement.IGNORE
        and c.updater_at is None
        and c.pays_elsewhere_at is None
        and c.cancels_at is None
        and all(getattr(c, k) == v for k, v in hidden.items())
    ]


def test_within_reach_is_what_the_best_charges_can_expect() -> None:
    world = RealisticWorld(1500, 45, 21, START)
    for cid in world.customers:
        one, three, cap = (world.within_reach(cid, n) for n in (1, 3, 15))
        assert 0.0 <= one <= three <= cap <= 1.0, cid
    # An issuer that approves one charge in fifty: fifteen of its best hours are worth at
    # most 1 - (1 - 0.02 x 1.15)^15, and a single charge at most 0.02 x 1.15; the oracle
    # counts nearly all of them recoverable, one of the window's hours being lucky.
    hopeless = _alone(world, Cause.ISSUER, approval=0.02, closes_at_charge=None)
    assert hopeless
    for cid in hopeless:
        assert 1 - (1 - 0.02 * 0.7 * 0.85) ** 15 <= world.within_reach(cid, 15)
        assert world.within_reach(cid, 15) <= 1 - (1 - 0.02 * 1.15) ** 15 + 1e-9
        assert world.within_reach(cid, 1) <= 0.02 * 1.15 + 1e-9
    assert sum(world.recoverable(cid) for cid in hopeless) > 0.9 * len(hopeless)
    # Money that never comes back, and nobody to replace the card: nothing within reach.
    broke = _alone(world, Cause.FUNDS, broke=True)
    assert broke and all(world.within_reach(cid, 15) == 0.0 for cid in broke)
    # An issuer that closes the account at the second charge: only the first can pass.
    closing = _alone(world, Cause.ISSUER, closes_at_charge=2)
    assert closing
    assert all(world.within_reach(cid, 15) == world.within_reach(cid, 1) for cid in closing)
    # Paying by other means ends the case recovered under any policy.
    elsewhere = [
        c.id
        for c in world.customers.values()
        if c.pays_elsewhere_at is not None and c.pays_elsewhere_at <= world.horizon
        and (c.cancels_at is None or c.pays_elsewhere_at < c.cancels_at)
    ]  # fmt: skip
    assert elsewhere and all(world.within_reach(cid, 15) == 1.0 for cid in elsewhere)
