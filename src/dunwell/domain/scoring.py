"""Learned retry timing, the pure part: features, the scorer port, and the best time.

The model itself lives in the shell (`dunwell.scoring`); the core only sees a `RetryScorer`,
a value in `Context` that maps features to the probability that a charge succeeds. The same
`retry_features` function builds the features when the model is trained (from past attempts)
and when a retry is planned (for each candidate time), so the two cannot drift apart.

`best_time` scores candidate times and picks the earliest one whose probability is within a
tolerance of the best: an explainable choice ("p=0.41 at 09:00 Europe/Berlin on the 1st, vs
0.12 now") that does not wait days for a sliver of probability.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from operator import attrgetter
from typing import Protocol
from zoneinfo import ZoneInfo

from dunwell.domain.case import AttemptStatus, RecoveryCase
from dunwell.domain.durations import format_duration
from dunwell.domain.lanes import Lane
from dunwell.domain.pay_calendars import calendar_names, open_calendars, pay_evidence
from dunwell.domain.policy import Align, LanePolicy, Timing
from dunwell.domain.timing import RetryTime, customer_zone, likely_paydays

# The order the model sees them in; categorical ones are strings.
FEATURE_NAMES: tuple[str, ...] = (
    "lane",
    "code",
    "amount_minor",
    "attempt_number",
    "hours_since_failure",
    "local_hour",
    "weekday",
    "day_of_month",
    "days_since_payday",
    "days_to_payday",
    "brand",
    "country",
    "segment",
    "hours_since_last_try",
    "fridays_since_last_try",
    "month_paydays_since_last_try",
    "pay_calendars_open",
    "open_calendars_paid_share",
    "days_since_open_payday",
)
CATEGORICAL: frozenset[str] = frozenset({"lane", "code", "brand", "country", "segment"})


@dataclass(frozen=True, slots=True)
class RetryFeatures:
    """What is known about one charge before it is sent: nothing a deployment cannot see."""

    lane: str
    code: str  # the last decline code before this charge ("" when unknown)
    amount_minor: int
    attempt_number: int  # 1 = the first retry dunwell makes
    hours_since_failure: float  # since the failure that opened the case
    local_hour: int  # in the customer's timezone (UTC when unknown)
    weekday: int  # 0 = Monday, local
    day_of_month: int  # local
    days_since_payday: int  # since the last likely payday (1st, 15th, last business day, the
    # country's own: timing.COUNTRY_PAYDAYS)
    days_to_payday: int  # to the next likely payday
    brand: str
    country: str
    segment: str
    # Since the last decline on this card (the failure that opened the case, for the first
    # retry): money comes back on a payday, so a payday in between is what makes a charge
    # that just failed for lack of funds worth repeating. Fridays (weekly and biweekly pay)
    # and the month's usual paydays are counted apart: the model learns which matter where.
    hours_since_last_try: float = 0.0
    fridays_since_last_try: int = 0
    month_paydays_since_last_try: int = 0
    # What the case's own declines say of the customer's pay calendar (`pay_calendars`): a
    # charge declined on a payday says that payday is not theirs. How many common calendars
    # are left, the share of them that paid since the last try, and the days since the
    # newest such payday (-1: none).
    pay_calendars_open: int = 0
    open_calendars_paid_share: float = 0.0
    days_since_open_payday: int = -1

    def values(self) -> tuple[str | int | float, ...]:
        # One C call, not `asdict`'s deep copy of every field: a backtest reads the values
        # of every candidate hour of every plan (15% of its time with `asdict`).
        return _FEATURE_VALUES(self)


_FEATURE_VALUES = attrgetter(*FEATURE_NAMES)


def retry_features(
    *,
    lane: str,
    code: str | None,
    amount_minor: int,
    attempt_number: int,
    failed_at: datetime,
    at: datetime,
    timezone: str | None,
    brand: str | None,
    country: str | None,
    segment: str | None,
    last_try_at: datetime | None = None,
    declined_at: Sequence[datetime] = (),
) -> RetryFeatures:
    """`declined_at`: this card's declined charges since the failure that opened the case,
    before `at` (the last of them is usually `last_try_at`)."""
    zone = customer_zone(timezone)
    local = at.astimezone(zone)
    day = local.date()
    where = (country or "").strip().upper()
    since, to = _payday_distance(day, where)
    last = failed_at if last_try_at is None or last_try_at < failed_at else last_try_at
    last_day = last.astimezone(zone).date()
    fridays, month_paydays = _paydays_between(last_day, day, where)
    declined = tuple(sorted({d.astimezone(zone).date() for d in declined_at if failed_at < d < at}))
    still, paid_share, since_open = pay_evidence(
        failed_at.astimezone(zone).date(), declined, last_day, day, where
    )
    return RetryFeatures(
        lane=lane,
        code=(code or "").strip().lower(),
        amount_minor=amount_minor,
        attempt_number=attempt_number,
        hours_since_failure=round(max((at - failed_at).total_seconds(), 0.0) / 3600, 2),
        local_hour=local.hour,
        weekday=local.weekday(),
        day_of_month=local.day,
        days_since_payday=since,
        days_to_payday=to,
        brand=(brand or "").strip().lower(),
        country=where,
        segment=(segment or "").strip().lower(),
        hours_since_last_try=round(max((at - last).total_seconds(), 0.0) / 3600, 2),
        fridays_since_last_try=fridays,
        month_paydays_since_last_try=month_paydays,
        pay_calendars_open=still,
        open_calendars_paid_share=paid_share,
        days_since_open_payday=since_open,
    )


@lru_cache(maxsize=8192)  # planning scores every candidate hour: the same days again and again
def _paydays_between(after: date, until: date, country: str) -> tuple[int, int]:
    """Fridays, and likely monthly paydays (1st, 15th, last business day, the country's own),
    in (after, until]."""
    if until <= after:
        return 0, 0
    days = (until - after).days
    fridays = (days + (after.weekday() - 4) % 7) // 7
    month = sum(1 for d in likely_paydays(after + timedelta(days=1), until, country))
    return fridays, month


@lru_cache(maxsize=8192)
def _payday_distance(day: date, country: str) -> tuple[int, int]:
    around = likely_paydays(day - timedelta(days=31), day + timedelta(days=31), country)
    before = max(d for d in around if d <= day)
    after = min(d for d in around if d >= day)
    return (day - before).days, (after - day).days


class RetryScorer(Protocol):
    """A trained model as the core sees it: a version and probabilities of success."""

    @property
    def version(self) -> str: ...

    @property
    def rows(self) -> int:
        """How many past attempts it was trained on (cold start below the policy's minimum)."""
        ...

    def score(self, features: Sequence[RetryFeatures]) -> list[float]:
        """One probability per feature row, in order."""
        ...

    def value_per_attempt(self, currency: str) -> int | None:
        """What one attempt recovered on average in the history the model learned from, in
        minor units of `currency`; None when that history has no attempt in it."""
        ...

    def depth_note(self, lane: str, attempt_number: int) -> str | None:
        """Why a probability was scaled down for an attempt deeper than the history shows
        (None when it was not), for the retry's explanation."""
        ...


@dataclass(frozen=True, slots=True)
class Choice:
    at: datetime
    probability: float
    now_at: datetime
    now_probability: float
    best_probability: float  # the highest in the window (the choice is within tolerance of it)


def candidate_times(
    earliest: datetime,
    latest: datetime,
    zone: ZoneInfo,
    local_hours: tuple[int, int],
    step: timedelta = timedelta(hours=1),
) -> list[datetime]:
    """Whole local hours in [earliest, latest] inside the customer's contact hours."""
    if latest < earliest:
        return []
    first = earliest.astimezone(zone)
    if first.minute or first.second or first.microsecond:
        first = first.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    out: list[datetime] = []
    at = first.astimezone(ZoneInfo("UTC"))
    while at <= latest:
        local = at.astimezone(zone)
        if local_hours[0] <= local.hour < local_hours[1]:
            out.append(at)
        at += step
    return out


def best_time(
    now: datetime,
    candidates: Sequence[datetime],
    features_at: _FeaturesAt,
    scorer: RetryScorer,
    tolerance: float = 0.05,
) -> Choice | None:
    """Score `now` and every candidate; the earliest candidate within `tolerance` (relative)
    of the best probability wins. None when there is no candidate."""
    if not candidates:
        return None
    rows = [features_at(now)] + [features_at(at) for at in candidates]
    probabilities = scorer.score(rows)
    p_now, scored = probabilities[0], list(zip(candidates, probabilities[1:], strict=True))
    best = max(p for _, p in scored)
    at, p = next((at, p) for at, p in scored if p >= best * (1 - tolerance))
    return Choice(at, p, now, p_now, best)


class _FeaturesAt(Protocol):
    def __call__(self, at: datetime, /) -> RetryFeatures: ...


def describe(choice: Choice, zone: ZoneInfo, version: str) -> str:
    local = choice.at.astimezone(zone)
    return (
        f"model {version}: p={choice.probability:.2f} at {local:%H:%M} {zone.key} on "
        f"{local:%a %d %b}, vs {choice.now_probability:.2f} now"
    )


def case_features_at(case: RecoveryCase, at: datetime) -> RetryFeatures:
    """The features of the case's next charge if it were sent at `at`."""
    return retry_features(
        lane=case.lane.value,
        code=case.decline.provider_code,
        amount_minor=case.amount.amount_minor,
        attempt_number=case.attempts_made + 1,
        failed_at=case.opened_at,
        at=at,
        timezone=case.customer.timezone,
        brand=case.payment_method.brand,
        country=case.customer.country,
        segment=case.customer.segment,
        last_try_at=case.last_failure_at,
        declined_at=_declined_on_card(case),
    )


def _declined_on_card(case: RecoveryCase) -> tuple[datetime, ...]:
    """When dunwell's charges on the case's current card were declined."""
    key = case.payment_method.credential_key
    return tuple(
        a.started_at
        for a in case.attempts
        if a.status is AttemptStatus.FAILED and a.credential_key == key
    )


def pay_note(case: RecoveryCase, at: datetime) -> str | None:
    """What the case's declines say of the customer's pay calendar, for a funds-lane retry's
    explanation; None until a decline on a payday has closed a calendar."""
    if case.lane is not Lane.RETRY_AFTER_FUNDS:
        return None
    zone = customer_zone(case.customer.timezone)
    country = (case.customer.country or "").strip().upper()
    failed = case.opened_at.astimezone(zone).date()
    declined = tuple(sorted({d.astimezone(zone).date() for d in _declined_on_card(case)}))
    still = open_calendars(failed, declined, country)
    every = calendar_names(country)
    if len(still) == len(every):
        return None
    last = max(declined) if declined else failed
    _, share, since = pay_evidence(failed, declined, last, at.astimezone(zone).date(), country)
    paid = round(share * len(still))
    named = ", ".join(still) if still else "none"
    tail = f"{paid} of them paid {since} day(s) before" if paid else "none of them paid since"
    return (
        f"declines on paydays leave {len(still)} of {len(every)} usual pay calendars "
        f"({named}); {tail}" + ("" if paid else " the last try")
    )


def _since(opened_at: datetime, at: datetime) -> str:
    """A window edge as time since the first failure, rounded down to the hour."""
    hours = max(int((at - opened_at).total_seconds() // 3600), 0)
    return format_duration(timedelta(hours=hours))


@dataclass(frozen=True, slots=True)
class LaneShare:
    """A lane's own value share (None: the policy's), and the lane's name for the rule."""

    name: str
    share: float | None


@dataclass(frozen=True, slots=True)
class ValueBar:
    """The expected recovery (probability x amount) a window must reach, and why that much."""

    minor: int
    rule: str
    why: str


def value_bar(
    timing: Timing, scorer: RetryScorer, currency: str, lane: LaneShare | None = None
) -> ValueBar:
    """The higher of the policy's absolute bar (`learned_min_value_minor`) and its relative
    one (`learned_min_value_share` x what an attempt recovered on average in the model's
    history, in the case's currency; a lane's own share, `lane`, replaces the policy's).
    The relative bar follows the merchant's prices and the model's level: the same policy
    spends about as many attempts per case for a shop of USD 5 plans as for one of USD 500
    plans, and after a retraining that moved every probability. Without history in the
    currency, only the absolute bar applies."""
    minor = timing.learned_min_value_minor
    bar = ValueBar(minor, "timing.learned_min_value_minor", f"{minor} minor units")
    share, share_rule = timing.learned_min_value_share, "timing.learned_min_value_share"
    if lane is not None and lane.share is not None:
        share, share_rule = lane.share, f"policy.lanes.{lane.name}.learned_min_value_share"
    if share <= 0:
        return bar
    per_attempt = scorer.value_per_attempt(currency)
    if per_attempt is None:
        return replace(bar, why=f"{bar.why} (no {currency} attempt in the model's history)")
    relative = math.ceil(share * per_attempt)
    if relative <= minor:
        return bar
    return ValueBar(
        relative,
        share_rule,
        f"{relative} minor units ({share:g} x the {per_attempt} {currency} minor units an "
        "attempt recovered on average in the model's history, where a retry is the remedy)",
    )


@dataclass(frozen=True, slots=True)
class NoRetry:
    """The model sees no hour worth a charge before the case ends."""

    rule: str
    reason: str


def learned_retry_at(
    case: RecoveryCase,
    lane_policy: LanePolicy,
    timing: Timing,
    now: datetime,
    scorer: RetryScorer | None,
) -> RetryTime | NoRetry | None:
    """The model's time for the case's next retry; None when the rules decide (cold start, not
    a learned lane, no retry left); `NoRetry` when no window has an hour worth a charge.

    The retry offsets cut the case's time into windows: each from one offset to the next (at
    most `timing.learned_window` long), the last one `learned_window` long, then more of that
    length until the case ends. The next retry goes in the first window after the one of the
    last attempt (and not wholly past). A window whose best expected recovery (probability x
    amount) is below the value bar (`value_bar`) is skipped for the next one, until the case
    ends: cheap, hopeless charges are not made; so is one whose best probability is below
    `timing.learned_min_probability`, whatever the amount. A skipped window keeps the
    ladder's cadence: the next is the ladder's next one, not a longer one."""
    if lane_policy.align is not Align.LEARNED:
        return None
    if scorer is None or scorer.rows <= 0 or scorer.rows < timing.learned_min_rows:
        return None  # cold start: no model yet (0 rows), or one trained on too little
    n = case.attempts_made
    if n >= lane_policy.max_attempts or n >= len(lane_policy.retries):
        return None
    zone = customer_zone(case.customer.timezone)
    end = case.opened_at + lane_policy.end_after - timedelta(hours=1)
    windows = _windows(case, lane_policy.retries, n, now, timing.learned_window)
    k, earliest, latest = next(windows)
    first = k
    amount = case.amount.amount_minor
    lane_share = LaneShare(case.lane.value, lane_policy.learned_min_value_share)
    bar = value_bar(timing, scorer, case.amount.currency, lane_share)
    skipped: list[Choice] = []
    while earliest <= end:
        candidates = candidate_times(earliest, min(latest, end), zone, timing.local_hours)
        choice = best_time(
            now,
            candidates,
            lambda at: case_features_at(case, at),
            scorer,
            timing.learned_tolerance,
        )
        if (
            choice is not None
            and choice.best_probability * amount >= bar.minor
            and choice.best_probability >= timing.learned_min_probability
        ):
            break
        if choice is not None:
            skipped.append(choice)
        k, earliest, latest = next(windows)
    else:
        best = max((c.best_probability for c in skipped), default=0.0)
        first_rule = _ladder_rule(case, lane_policy, first, scorer.version)
        if best < timing.learned_min_probability:
            return NoRetry(
                first_rule + " + timing.learned_min_probability",
                f"no retry: the model's best chance before the case ends is p={best:.2f}, "
                f"below the policy's floor of {timing.learned_min_probability:.2f}",
            )
        return NoRetry(
            f"{first_rule} + {bar.rule}",
            f"no retry: the model's best chance before the case ends is p={best:.2f}, worth "
            f"{best * amount:.0f} of {amount} minor units, below the bar of {bar.why}",
        )
    rule = _ladder_rule(case, lane_policy, k, scorer.version)
    total = min(lane_policy.max_attempts, len(lane_policy.retries))
    window_from = _since(case.opened_at, earliest)
    window_to = _since(case.opened_at, min(latest, end))
    reason = (
        f"retry {n + 1} of {total} for lane {case.lane.value}: the best hour from "
        f"{window_from} to {window_to} after the first failure; "
        f"{describe(choice, zone, scorer.version)}"
    )
    if choice.probability < choice.best_probability:
        reason += f" (best {choice.best_probability:.2f}, later)"
    depth = scorer.depth_note(case.lane.value, n + 1)
    if depth is not None:
        reason += f"; {depth}"
    pay = pay_note(case, choice.at)
    if pay is not None:
        reason += f"; {pay}"
    if skipped:
        reason += (
            f"; {len(skipped)} earlier window(s) skipped as not worth a charge (the bar: {bar.why})"
        )
    return RetryTime(choice.at, rule, reason)


def _windows(
    case: RecoveryCase,
    offsets: tuple[timedelta, ...],
    n: int,
    now: datetime,
    length: timedelta,
) -> Iterator[tuple[int, datetime, datetime]]:
    """The windows the next retry may go in, in order, as (ladder index, from, to): the
    ladder's own, from the first after the last attempt's window (at least the n-th, and not
    one wholly past), then windows of `length` without end (the caller stops at the case's)."""
    opened = case.opened_at
    last = case.attempts[-1].started_at if case.attempts else None
    k = n
    while k < len(offsets) and last is not None and opened + offsets[k] <= last:
        k += 1  # one try per window: the last attempt's is used
    while k + 1 < len(offsets) and opened + offsets[k + 1] <= now:
        k += 1  # a window wholly past is gone
    latest = now - timedelta(hours=1)
    while k < len(offsets):
        earliest = max(opened + offsets[k], now)
        latest = earliest + length
        if k + 1 < len(offsets):  # never past the next retry's own offset
            latest = min(latest, max(opened + offsets[k + 1], earliest))
        yield k, earliest, latest
        k += 1
    while True:
        earliest = latest + timedelta(hours=1)
        latest = earliest + length
        yield k, earliest, latest


def _ladder_rule(case: RecoveryCase, lane: LanePolicy, k: int, version: str) -> str:
    """The policy rows a window comes from, for the explanation."""
    where = f"policy.lanes.{case.lane.value}.retries"
    if k < len(lane.retries):
        return f"{where}[{k}] + model {version}"
    return f"{where}[{len(lane.retries) - 1}] + timing.learned_window + model {version}"
