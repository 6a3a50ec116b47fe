"""Guardrails no policy can break, checked over random policies and random event sequences.

Hypothesis builds a policy (random offsets, max_attempts, alignment, notices, access steps)
and a random story on several cases that share ONE card, so the per-credential network caps
bind. A small simulator drives the pure core the way the engine would, skipping time: it
always takes the earliest thing that happens next (a scripted event, the outcome of a charge,
or the earliest planned action of any case), feeds it to `decide`, keeps the attempt ledger
from the decisions, and answers every `Charge` with a random outcome a little later. An
independent record of what reached the card networks is then held against the rules:

(a) no charge on a credential after a never-retry decline of it (do_not_retry,
    fraud_suspected, Mastercard advice 03/21, Visa category 1), within the case;
(b) Visa (and other brands) at most 15 counted attempts in any rolling 30 days per credential,
    20 under the 2025 rule; Mastercard at most 10 in any 24 hours and 35 in 30 days; the
    declines that opened the cases count too;
(c) no charge on a credential before a Mastercard advice code 24-30 delay has passed;
(d) never two attempts in flight for one case;
(e) never more attempts per case than NetworkLimits.max_attempts_per_case;
(f) every refusal the core explains (rules `guardrail.*`) has a text.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings, target
from hypothesis import strategies as st

from dunwell.domain.case import AttemptStatus, CaseStatus, RecoveryCase
from dunwell.domain.decide import decide
from dunwell.domain.decision import Charge, Context, Decision
from dunwell.domain.events import (
    ActionDue,
    AttemptErrored,
    Customer,
    CustomerAuthenticated,
    DeclineReport,
    DisputeOpened,
    Event,
    PaymentFailed,
    PaymentMethod,
    PaymentMethodUpdated,
    PaymentSucceeded,
    Subscription,
    SubscriptionCanceled,
)
from dunwell.domain.guardrails import NetworkLimits, check_attempt
from dunwell.domain.lanes import NEVER_RETRY_LANES, Lane
from dunwell.domain.ledger import AttemptLedger, LedgerEntry
from dunwell.domain.money import Money
from dunwell.domain.policy import Policy, parse_policy

pytestmark = pytest.mark.unit

START = datetime(2025, 1, 27, 9, 30, tzinfo=UTC)
SHARED = "fp_shared_card"
DAY = timedelta(days=1)
MONTH = timedelta(days=30)
MAX_STEPS = 600

# --- the rules, written out independently of the core ------------------------------------------


def network_caps(brand: str | None, limits: NetworkLimits) -> list[tuple[int, timedelta]]:
    if (brand or "").lower() == "mastercard":
        return [(10, DAY), (35, MONTH)]
    return [(20 if limits.visa_rule == "2025" else 15, MONTH)]


# Written out here rather than read from the code tables, so the check stays independent.
NEVER_RETRY_CODES = frozenset({"fraudulent", "stolen_card", "do_not_try_again"})
MASTERCARD_NEVER_RETRY_ADVICE = frozenset({"03", "21"})
VISA_NEVER_RETRY_CODES = frozenset(
    {"04", "07", "12", "14", "15", "41", "43", "46", "57", "R0", "R1", "R3"}
)
MASTERCARD_RETRY_AFTER = {
    "24": timedelta(hours=1),
    "25": timedelta(hours=24),
    "26": timedelta(days=2),
    "27": timedelta(days=4),
    "28": timedelta(days=6),
    "29": timedelta(days=8),
    "30": timedelta(days=10),
}


def never_retry(report: DeclineReport, brand: str | None) -> bool:
    return (
        (report.provider_code or "").lower() in NEVER_RETRY_CODES
        or report.advice_code in MASTERCARD_NEVER_RETRY_ADVICE
        or ((brand or "").lower() == "visa" and report.network_code in VISA_NEVER_RETRY_CODES)
    )


# --- strategies (built once: building them per draw is what makes hypothesis slow) ------------

SOFT_CODES = [
    "insufficient_funds",
    "do_not_honor",
    "generic_decline",
    "try_again_later",
    "card_velocity_exceeded",
    "issuer_not_available",
]
OTHER_CODES = [
    "expired_card",
    "incorrect_cvc",
    "authentication_required",
    "fraudulent",
    "stolen_card",
    "do_not_try_again",
    "a_code_from_the_future",
    None,
]
ADVICE = ["01", "03", "21", *sorted(MASTERCARD_RETRY_AFTER)]
NETWORK = ["05", "51", "04", "R0", "14", "N7"]
ZONES = [None, "UTC", "America/New_York", "Asia/Kolkata", "Pacific/Auckland", "Not/AZone"]
BRANDS = ["visa", "mastercard", "amex"]
LEVELS = ["grace", "limited", "suspended"]

PLAIN_DECLINE = st.builds(DeclineReport, st.sampled_from(SOFT_CODES))
ANY_DECLINE = st.builds(
    DeclineReport,
    st.one_of(st.sampled_from(SOFT_CODES), st.sampled_from(SOFT_CODES + OTHER_CODES)),
    st.one_of(st.none(), st.none(), st.sampled_from(NETWORK)),
    st.one_of(st.none(), st.none(), st.sampled_from(ADVICE)),
)
# How dunwell's own charges are answered, in turn: outcome, decline, latency in minutes.
LATENCY = st.sampled_from([0, 0, 1, 30, 240])
ANSWERS = st.lists(
    st.tuples(
        st.sampled_from(["decline"] * 6 + ["success", "errored"]),
        st.one_of(PLAIN_DECLINE, PLAIN_DECLINE, ANY_DECLINE),
        LATENCY,
    ),
    min_size=1,
    max_size=12,
)
PRESSURE_ANSWERS = st.lists(
    st.tuples(st.sampled_from(["decline"] * 12 + ["errored"]), PLAIN_DECLINE, LATENCY),
    min_size=1,
    max_size=8,
)

CHECKPOINT = st.one_of(
    st.tuples(st.just("entered"), st.just(0)),
    st.tuples(st.just("failure"), st.integers(1, 6)),
    st.tuples(st.just("every_failure"), st.just(0)),
    st.tuples(st.just("elapsed"), st.integers(0, 999)),  # thousandths of the case's length
)


def lane_rows(offsets: st.SearchStrategy[list[int]], attempts: st.SearchStrategy[int]) -> Any:
    return st.tuples(
        st.integers(2, 21),  # end after, days
        offsets,
        attempts,
        st.sampled_from(["none", "local_hours", "payday"]),
        st.lists(CHECKPOINT, max_size=3),
        st.lists(st.sampled_from(LEVELS), unique=True, max_size=3),
        st.lists(st.integers(0, 999), min_size=3, max_size=3),  # access steps, thousandths
        st.sampled_from(["churned", "written_off"]),
    )


# Dense: many offsets within 3 days (minutes) and max_attempts = offsets + 0..2. Sparse: a few
# offsets anywhere in the case (thousandths of its length), max_attempts 0..8.
DENSE_ROW = lane_rows(
    st.lists(st.integers(5, 3 * 1440), min_size=4, max_size=12, unique=True), st.integers(0, 2)
)
SPARSE_ROW = lane_rows(st.lists(st.integers(1, 999), max_size=6, unique=True), st.integers(0, 8))
NEVER_ROW = lane_rows(st.just([]), st.just(0))
TIMING = st.tuples(
    st.integers(0, 12),
    st.integers(1, 12),
    st.integers(0, 6),
    st.integers(0, 60),
    st.lists(st.integers(1, 180), max_size=3),
)
LIMITS = st.builds(
    NetworkLimits,
    st.sampled_from(["2024", "2025"]),
    st.one_of(st.just(12), st.integers(1, 12)),
)


SHARES_ROW = {
    Lane.RETRY_SOON: 0,
    Lane.RETRY_AFTER_FUNDS: 1,
    Lane.UPDATE_PAYMENT_METHOD: 2,
    Lane.AUTHENTICATE: 2,
    Lane.PROVIDER_ERROR: 2,
    Lane.DO_NOT_RETRY: 3,
    Lane.FRAUD_SUSPECTED: 3,
}


def minutes(n: int) -> str:
    return f"{n}m"


def lane_row(dense: bool, raw: tuple[Any, ...]) -> dict[str, Any]:
    end_days, raw_offsets, raw_attempts, align, checks, levels, afters, end = raw
    end_min = end_days * 1440
    if dense:
        offsets = sorted(o for o in raw_offsets if o < end_min)
        max_attempts = len(offsets) + raw_attempts
    else:
        offsets = sorted({max(1, k * end_min // 1000) for k in raw_offsets})
        max_attempts = min(raw_attempts, len(offsets) + 2)
    notices = []
    for when, n in checks:
        notice: dict[str, Any] = {"when": when, "template": f"t_{when}", "channel": "email"}
        if when == "failure":
            notice["count"] = n
        if when == "elapsed":
            notice["after"] = minutes(n * end_min // 1000)
        notices.append(notice)
    access_afters = sorted(a * end_min // 1000 for a in afters)
    access = [
        {"after": minutes(access_afters[i]), "level": level}
        for i, level in enumerate(sorted(levels, key=LEVELS.index))
    ]
    return {
        "retries": [minutes(o) for o in offsets],
        "max_attempts": max_attempts,
        "align": align,
        "notices": notices,
        "access": access,
        "end": {"after": f"{end_days}d", "outcome": end},
    }


@st.composite
def policies(draw: st.DrawFn, dense: bool) -> dict[str, Any]:
    start, length, window, fix, technical = draw(TIMING)
    retryable = DENSE_ROW if dense else SPARSE_ROW
    rows = [lane_row(dense, draw(row)) for row in (retryable, retryable, retryable, NEVER_ROW)]
    return {
        "name": "random",
        "timing": {
            "local_hours": [start, min(24, start + length)],
            "payday_window": f"{window}d",
            "customer_fix_delay": minutes(fix),
            "technical_retries": [minutes(m) for m in technical],
        },
        "escalation": {"segments": ["enterprise"]},
        # Three random rows for the retryable lanes, one for the never-retry lanes.
        "lanes": {lane.value: rows[SHARES_ROW[lane]] for lane in Lane},
    }


@dataclass(frozen=True)
class Step:
    """A scripted external event: `kind` happens to case `case`, `gap` minutes after the last."""

    gap: int
    kind: str
    case: int
    decline: DeclineReport
    fresh_card: bool
    brand: str


@dataclass(frozen=True)
class Opening:
    gap: int
    decline: DeclineReport
    timezone: str | None
    segment: str | None


@dataclass(frozen=True)
class Story:
    policy: dict[str, Any]
    brand: str
    limits: NetworkLimits
    openings: tuple[Opening, ...]
    script: tuple[Step, ...]
    answers: tuple[tuple[str, DeclineReport, int], ...]  # dunwell's charges are answered in turn
    redeliver_every: int  # every Nth action is delivered twice (0: never)
    pressure: bool  # dense retries, soft declines only: the network caps must bind


KINDS = st.sampled_from(["decline"] * 4 + ["card"] * 2 + ["auth", "success", "cancel", "dispute"])
PRESSURE_KINDS = st.sampled_from(["decline", "card", "auth"])


@st.composite
def stories(draw: st.DrawFn) -> Story:
    pressure = draw(st.booleans())
    n_cases = draw(st.integers(2, 4) if pressure else st.integers(1, 4))
    declines = PLAIN_DECLINE if pressure else ANY_DECLINE
    openings = tuple(
        Opening(
            draw(st.integers(0, 12 * 60)),
            draw(declines),
            draw(st.sampled_from(ZONES)),
            None if pressure else draw(st.sampled_from([None, None, None, "enterprise"])),
        )
        for _ in range(n_cases)
    )
    step = st.builds(
        Step,
        gap=st.integers(0, 4 * 1440),
        kind=PRESSURE_KINDS if pressure else KINDS,
        case=st.integers(0, n_cases - 1),
        decline=declines,
        fresh_card=st.just(False) if pressure else st.booleans(),
        brand=st.sampled_from(BRANDS),
    )
    return Story(
        policy=draw(policies(dense=pressure or draw(st.booleans()))),
        brand=draw(st.sampled_from(BRANDS)),
        limits=draw(LIMITS),
        openings=openings,
        script=tuple(draw(st.lists(step, max_size=8))),
        answers=tuple(draw(PRESSURE_ANSWERS if pressure else ANSWERS)),
        redeliver_every=draw(st.integers(0, 4)),
        pressure=pressure,
    )


# --- the simulator -----------------------------------------------------------------------------


@dataclass
class ChargeRecord:
    case: int
    attempt_id: str
    credential: str
    at: datetime
    send: int  # position in the network record: one attempt may be sent again after an error


@dataclass
class World:
    """Drives the pure core and keeps an independent record of what reached the networks."""

    story: Story
    policy: Policy
    clock: datetime = START
    ledger: AttemptLedger = AttemptLedger()
    cases: dict[int, RecoveryCase] = field(default_factory=dict)
    queue: list[tuple[datetime, int, str, Any]] = field(default_factory=list)
    seq: int = 0
    # The independent record.
    network: list[tuple[str, datetime, int]] = field(default_factory=list)
    errored: set[int] = field(default_factory=set)  # sends the provider failed on
    charges: list[ChargeRecord] = field(default_factory=list)
    blocked: dict[int, set[str]] = field(default_factory=dict)
    wait_until: dict[tuple[int, str], datetime] = field(default_factory=dict)
    in_flight: dict[int, str] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)
    refusals: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def next_id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}_{self.seq}"

    def push(self, at: datetime, kind: str, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, kind, payload))

    # feeding the core

    def feed(self, index: int, evt: Event) -> Decision:
        context = Context("tenant", self.ledger, self.story.limits)
        decision = decide(self.cases.get(index), evt, self.policy, self.clock, context)
        for entry in decision.ledger_entries:
            self.ledger = self.ledger.with_entry(entry)
        for attempt_id in decision.ledger_uncount:
            self.ledger = self.ledger.uncount(attempt_id)
        for note in decision.explanations:
            if note.rule.startswith("guardrail."):
                self.refusals.append(note.rule)
                if not note.text.strip():
                    self.violations.append(f"(f) refusal {note.rule} without a text")
        if decision.case is not None:
            self.cases[index] = decision.case
            for action in decision.case.plan:
                if action.due_at < self.clock:
                    self.violations.append(f"{action.key} planned in the past")
        for effect in decision.effects:
            if isinstance(effect, Charge):
                self.on_charge(index, effect)
        return decision

    def decline(
        self, index: int, card: PaymentMethod, report: DeclineReport, attempt_id: str | None
    ) -> None:
        evt = PaymentFailed(
            self.next_id("evt"),
            self.clock,
            Customer(
                f"cus_{index}",
                timezone=self.story.openings[index].timezone,
                segment=self.story.openings[index].segment,
            ),
            Subscription(f"sub_{index}"),
            f"in_{index}",
            Money(2500, "EUR"),
            "stripe",
            card,
            report,
            attempt_id=attempt_id,
        )
        if self.feed(index, evt).outcome == "ignored":
            return
        if attempt_id is None:  # a decline dunwell did not make reached the network too
            self.network.append((card.credential_key, self.clock, None))
        if never_retry(report, card.brand):
            self.blocked.setdefault(index, set()).add(card.credential_key)
        delay = MASTERCARD_RETRY_AFTER.get(report.advice_code or "")
        if delay is not None:
            key = (index, card.credential_key)
            self.wait_until[key] = max(self.wait_until.get(key, self.clock), self.clock + delay)

    def on_charge(self, index: int, charge: Charge) -> None:
        credential = charge.payment_method.credential_key
        at = self.clock
        if charge.idempotency_key != charge.attempt_id:
            self.violations.append("the idempotency key is not the attempt id")
        # One attempt may be sent again only while its outcome is unknown (every earlier send
        # errored): that is how the same idempotency key resolves it.
        if any(
            c.attempt_id == charge.attempt_id and c.send not in self.errored for c in self.charges
        ):
            self.violations.append(f"attempt id {charge.attempt_id} reused after an outcome")
        if index in self.ended:
            self.violations.append(f"charge on case {index} after it was canceled or disputed")
        if credential in self.blocked.get(index, set()):
            self.violations.append(f"(a) charge at {at} on never-retry credential {credential}")
        until = self.wait_until.get((index, credential))
        if until is not None and at < until:
            self.violations.append(f"(c) charge at {at} before the advice delay ends at {until}")
        if index in self.in_flight:
            self.violations.append(f"(d) a second attempt in flight on case {index} at {at}")
        self.in_flight[index] = charge.attempt_id
        send = len(self.network)
        self.charges.append(ChargeRecord(index, charge.attempt_id, credential, at, send))
        self.network.append((credential, at, send))
        for cap, window in network_caps(charge.payment_method.brand, self.story.limits):
            counted = [
                t
                for cred, t, sent in self.network
                if cred == credential and at - window < t <= at and sent not in self.errored
            ]
            if len(counted) > cap:
                self.violations.append(
                    f"(b) {len(counted)} attempts on {credential} in {window} up to {at}, cap {cap}"
                )
        # The charge's outcome comes back a little later.
        answers = self.story.answers
        outcome, report, latency = answers[(len(self.charges) - 1) % len(answers)]
        self.push(
            at + timedelta(minutes=latency), "outcome", (index, charge, outcome, report, send)
        )

    def on_outcome(
        self, index: int, charge: Charge, outcome: str, report: DeclineReport, send: int
    ) -> None:
        if self.in_flight.get(index) == charge.attempt_id:
            del self.in_flight[index]
        if outcome == "decline":
            self.decline(index, charge.payment_method, report, charge.attempt_id)
        elif outcome == "success":
            paid = PaymentSucceeded(
                self.next_id("evt"), self.clock, f"in_{index}", attempt_id=charge.attempt_id
            )
            self.feed(index, paid)
        else:
            self.errored.add(send)
            errored = AttemptErrored(
                self.next_id("evt"), self.clock, charge.case_id, charge.attempt_id, "HTTP 503"
            )
            self.feed(index, errored)

    def on_step(self, step: Step) -> None:
        index = step.case
        case = self.cases[index]
        customer_id = f"cus_{index}"
        if step.kind == "decline":
            self.decline(index, case.payment_method, step.decline, None)
        elif step.kind == "card":
            if step.fresh_card:
                card = PaymentMethod(self.next_id("pm"), step.brand, self.next_id("fp"))
            else:  # a new token for the same card: still the same credential
                card = replace(case.payment_method, token=self.next_id("pm"))
            self.feed(
                index, PaymentMethodUpdated(self.next_id("evt"), self.clock, customer_id, card)
            )
        elif step.kind == "auth":
            self.feed(index, CustomerAuthenticated(self.next_id("evt"), self.clock, customer_id))
        elif step.kind == "success":
            self.feed(index, PaymentSucceeded(self.next_id("evt"), self.clock, f"in_{index}"))
        elif step.kind == "cancel":
            canceled = SubscriptionCanceled(self.next_id("evt"), self.clock, f"sub_{index}")
            if self.feed(index, canceled).outcome != "ignored":
                self.ended.add(index)
        elif step.kind == "dispute":
            disputed = DisputeOpened(self.next_id("evt"), self.clock, f"in_{index}")
            if self.feed(index, disputed).outcome != "ignored":
                self.ended.add(index)

    def earliest_action(self) -> tuple[datetime, int, str] | None:
        return min(
            (
                (action.due_at, index, action.key)
                for index, case in self.cases.items()
                if case.is_open and (action := case.next_action) is not None
            ),
            default=None,
        )

    def run(self) -> None:
        at = START
        for index, opening in enumerate(self.story.openings):
            at += timedelta(minutes=opening.gap)
            self.push(at, "open", index)
        for step in self.story.script:
            at += timedelta(minutes=step.gap)
            self.push(at, "step", step)
        for _ in range(MAX_STEPS):
            due = self.earliest_action()
            if not self.queue and due is None:
                return
            if self.queue and (due is None or self.queue[0][0] <= due[0]):
                at, _, kind, payload = heapq.heappop(self.queue)
                self.clock = max(self.clock, at)
                if kind == "open":
                    card = PaymentMethod(f"pm_open_{payload}", self.story.brand, SHARED)
                    self.decline(payload, card, self.story.openings[payload].decline, None)
                elif kind == "outcome":
                    self.on_outcome(*payload)
                elif payload.case in self.cases:
                    self.on_step(payload)
                continue
            due_at, index, key = due  # type: ignore[misc]
            if due_at < self.clock:
                self.violations.append(f"{key} due at {due_at} was left behind at {self.clock}")
            self.clock = max(self.clock, due_at)
            action_due = ActionDue(self.next_id("due"), self.clock, self.cases[index].id, key)
            self.feed(index, action_due)
            every = self.story.redeliver_every
            if every and self.seq % every == 0:
                # The same action delivered twice (a crash, a second worker): whether it was
                # carried out or refused and planned again for later, nothing happens twice.
                again = self.feed(index, action_due)
                if again.outcome != "ignored" or again.effects or again.ledger_entries:
                    self.violations.append(f"the redelivered {key} acted: {again.explanations}")

    def check_end(self) -> None:
        limit = self.story.limits.max_attempts_per_case
        for index, case in self.cases.items():
            made = len(
                {
                    c.attempt_id
                    for c in self.charges
                    if c.case == index and c.send not in self.errored
                }
            )
            if made > limit:
                self.violations.append(f"(e) case {index} made {made} attempts, limit {limit}")
            if case.attempts_made != made:
                self.violations.append(f"case {index} counts {case.attempts_made}, seen {made}")
            if sum(1 for a in case.attempts if a.status is AttemptStatus.IN_FLIGHT) > 1:
                self.violations.append(f"(d) case {index} has two attempts in flight")
        # The ledger kept from the decisions agrees with what reached the networks.
        ours = sorted((cred, t) for cred, t, sent in self.network if sent not in self.errored)
        theirs = sorted(
            (e.credential_key, e.attempted_at) for e in self.ledger.entries if e.counted
        )
        if ours != theirs:
            self.violations.append("the ledger from the decisions differs from the network")


def simulate(story: Story, policy: Policy | None = None) -> World:
    world = World(story, policy or parse_policy(story.policy))
    world.run()
    world.check_end()
    return world


@settings(
    # A few dozen stories per run keep the suite fast; every run draws new ones. For a long
    # hunt: DUNWELL_PROPERTY_EXAMPLES=5000 pytest tests/unit -k guardrail
    max_examples=int(os.environ.get("DUNWELL_PROPERTY_EXAMPLES", "20")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(stories())
def test_no_random_policy_and_story_makes_the_core_break_a_guardrail(
    story: Story,
) -> None:
    world = simulate(story)
    assert world.violations == []
    caps_hit = world.refusals.count("guardrail.network_cap")
    target(float(caps_hit), label="network cap refusals")
    event(f"brand {story.brand}, {'pressure' if story.pressure else 'mixed'}")
    event("a network cap refused" if caps_hit else "no network cap reached")
    for rule in sorted(set(world.refusals)):
        event(f"refused by {rule}")


# --- the caps bind: deterministic stories, so the property above is not vacuous -------------


def dense_policy(offsets_minutes: list[int], end: str = "21d") -> Policy:
    row = {
        "retries": [minutes(m) for m in offsets_minutes],
        "align": "none",
        "end": {"after": end},
    }
    never = {"retries": [], "end": {"after": end}}
    lanes = {lane.value: never if lane in NEVER_RETRY_LANES else row for lane in Lane}
    return parse_policy({"name": "dense", "lanes": lanes})


def one_card_story(brand: str, n_cases: int, limits: NetworkLimits, gap: int = 0) -> Story:
    return Story(
        policy={},
        brand=brand,
        limits=limits,
        openings=tuple(
            Opening(gap, DeclineReport("do_not_honor"), "UTC", None) for _ in range(n_cases)
        ),
        script=(),
        answers=(("decline", DeclineReport("do_not_honor"), 0),),  # every charge, at once
        redeliver_every=0,
        pressure=True,
    )


def test_three_invoices_on_one_mastercard_hit_the_24h_cap_and_wait_it_out() -> None:
    policy = dense_policy([10 * n for n in range(1, 12)])
    story = one_card_story("mastercard", 3, NetworkLimits(max_attempts_per_case=12))
    world = simulate(story, policy)
    assert world.violations == []
    assert "guardrail.network_cap" in world.refusals
    times = sorted(t for cred, t, _ in world.network if cred == SHARED)
    # 3 openings + 3 x 11 retries wanted; they are spread out, and the 30-day cap of 35
    # refuses the very last one.
    assert len(times) == 35
    assert world.refusals.count("guardrail.network_cap") > 3
    for i, t in enumerate(times):
        assert len([u for u in times[: i + 1] if t - DAY < u]) <= 10
    assert all(case.status is CaseStatus.CHURNED for case in world.cases.values())


@pytest.mark.parametrize(("rule", "cap"), [("2024", 15), ("2025", 20)])
def test_four_invoices_on_one_visa_card_stop_at_the_30_day_cap(rule: str, cap: int) -> None:
    policy = dense_policy([1440 * n for n in range(1, 8)], end="20d")
    limits = NetworkLimits(visa_rule=rule, max_attempts_per_case=12)  # type: ignore[arg-type]
    world = simulate(one_card_story("visa", 4, limits), policy)
    assert world.violations == []
    assert "guardrail.network_cap" in world.refusals
    # 4 openings + 4 x 7 retries wanted; within the 20 days only `cap` reach the network.
    assert len(world.network) == cap


def test_the_per_case_maximum_stops_a_long_policy() -> None:
    policy = dense_policy([60 * n for n in range(1, 21)])
    world = simulate(one_card_story("amex", 1, NetworkLimits(max_attempts_per_case=4)), policy)
    assert world.violations == []
    assert len(world.charges) == 4
    assert "guardrail.case_maximum" in world.refusals
    assert world.cases[0].status is CaseStatus.CHURNED


# --- check_attempt directly ---------------------------------------------------------------------


def a_case(brand: str, **changes: Any) -> RecoveryCase:
    opened = PaymentFailed(
        "evt_0",
        START,
        Customer("cus_0"),
        Subscription("sub_0"),
        "in_0",
        Money(2500, "EUR"),
        "stripe",
        PaymentMethod("pm_0", brand, SHARED),
        DeclineReport("do_not_honor"),
    )
    case = decide(None, opened, dense_policy([60]), START, Context("tenant")).case
    assert case is not None
    return replace(case, **changes)


def counted(*times: datetime, credential: str = SHARED) -> AttemptLedger:
    return AttemptLedger(tuple(LedgerEntry(credential, t) for t in times))


def test_a_network_cap_refusal_says_when_the_card_is_free_again() -> None:
    case = a_case("mastercard")
    at = START + timedelta(hours=12)
    ledger = counted(*(at - timedelta(hours=10 - n) for n in range(10)))
    verdict = check_attempt(case, at, ledger, NetworkLimits())
    assert not verdict.allowed and not verdict.final
    assert verdict.rule == "guardrail.network_cap"
    assert "mastercard 24h cap" in verdict.reason
    assert verdict.not_before == at - timedelta(hours=10) + DAY + timedelta(seconds=1)
    assert verdict.not_before is not None
    assert check_attempt(case, verdict.not_before, ledger, NetworkLimits()).allowed
    # While the oldest of the ten is still inside the (start, end] window, still refused.
    oldest_leaves = at - timedelta(hours=10) + DAY
    still_full = check_attempt(case, oldest_leaves - timedelta(seconds=1), ledger, NetworkLimits())
    assert still_full.rule == "guardrail.network_cap"


def test_attempts_on_another_card_or_not_counted_do_not_count() -> None:
    case = a_case("mastercard")
    at = START + timedelta(hours=12)
    other = counted(*(at - timedelta(minutes=n) for n in range(30)), credential="fp_other")
    assert check_attempt(case, at, other, NetworkLimits()).allowed
    uncounted = AttemptLedger(
        tuple(LedgerEntry(SHARED, at - timedelta(minutes=n), f"att_{n}", False) for n in range(30))
    )
    assert check_attempt(case, at, uncounted, NetworkLimits()).allowed


def test_the_30_day_window_is_rolling_and_half_open() -> None:
    case = a_case("visa")
    at = START + timedelta(days=40)
    inside = [at - timedelta(days=29, hours=23)] + [at - timedelta(hours=n) for n in range(14)]
    assert not check_attempt(case, at, counted(*inside), NetworkLimits()).allowed
    assert check_attempt(case, at, counted(*inside), NetworkLimits(visa_rule="2025")).allowed
    outside = [at - MONTH] + [at - timedelta(hours=n) for n in range(14)]  # exactly 30d ago
    assert check_attempt(case, at, counted(*outside), NetworkLimits()).allowed


def test_the_guardrails_are_judged_in_order_and_explain_themselves() -> None:
    at = START + timedelta(hours=1)
    full = counted(*(at - timedelta(minutes=n) for n in range(20)))
    blocked = a_case("visa", blocked_credentials=frozenset({SHARED}))
    verdict = check_attempt(blocked, at, full, NetworkLimits())
    assert (verdict.rule, verdict.final) == ("guardrail.never_retry", True)
    waiting = a_case("mastercard", not_before=at + timedelta(days=2))
    verdict = check_attempt(waiting, at, AttemptLedger(), NetworkLimits())
    assert (verdict.rule, verdict.not_before) == ("guardrail.advice_delay", at + timedelta(days=2))
    verdict = check_attempt(
        a_case("visa"), at, AttemptLedger(), NetworkLimits(max_attempts_per_case=0)
    )
    assert (verdict.rule, verdict.final) == ("guardrail.case_maximum", True)
    for refused in (blocked, waiting):
        assert check_attempt(refused, at, full, NetworkLimits()).reason.strip()


def test_other_brands_are_capped_as_visa() -> None:
    limits = NetworkLimits()
    assert [(n, w) for _, n, w in limits.caps("amex")] == [(15, MONTH)]
    assert [(n, w) for _, n, w in limits.caps(None)] == [(15, MONTH)]
    assert [(n, w) for _, n, w in NetworkLimits(visa_rule="2025").caps("VISA")] == [(20, MONTH)]
    assert [(n, w) for _, n, w in limits.caps("MasterCard")] == [(10, DAY), (35, MONTH)]
