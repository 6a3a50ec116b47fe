"""Policies as data: a decision table per lane, validated before it can go live.

`parse_policy` turns a plain mapping (read from YAML by the shell) into frozen values, or
raises `PolicyError` listing every problem with its path, e.g.
`lanes.retry_soon.retries[2]: '3x' is not a duration like 30m, 6h, 3d or 2w`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from dunwell.domain.durations import parse_duration
from dunwell.domain.lanes import NEVER_RETRY_LANES, Lane


class AccessLevel(StrEnum):
    FULL = "full"
    GRACE = "grace"
    LIMITED = "limited"
    SUSPENDED = "suspended"

    @property
    def rank(self) -> int:
        return _ACCESS_RANKS[self]


# The order levels are declared in, from full to suspended: asked on every replan.
# A relative value bar above ten times an average attempt's recovery is surely a typo.
MAX_VALUE_SHARE = 10.0
_ACCESS_RANKS = {level: rank for rank, level in enumerate(AccessLevel)}


class Align(StrEnum):
    NONE = "none"
    LOCAL_HOURS = "local_hours"  # only inside the customer's local contact hours
    PAYDAY = "payday"  # move to a likely payday when one is close, then local hours
    # The learned model picks the best local hour in a window after each offset; until a
    # model trained on enough history exists (cold start), the payday rule applies.
    LEARNED = "learned"


class EndOutcome(StrEnum):
    CHURNED = "churned"
    WRITTEN_OFF = "written_off"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """When a notice goes out: never per retry, only at one of these."""

    # entered: the first time the case is in this lane (at opening, or moved by a decline).
    # entered | failure | every_failure | elapsed | retries_exhausted (no retry left on the
    # lane's ladder: ask the customer instead). YAML 1.1 reads a key `on` as true: `when`.
    when: str
    template: str
    channel: str = "email"
    count: int | None = None  # on: failure, the Nth failed charge (the first failure is 1)
    after: timedelta | None = None  # on: elapsed, time since the case opened

    def key(self, failures: int) -> str:
        if self.when == "failure":
            return f"notice:failure-{self.count}:{self.template}"
        if self.when == "every_failure":
            return f"notice:failure-{failures}:{self.template}"
        if self.when == "retries_exhausted":
            return f"notice:retries-exhausted:{self.template}"
        if self.when == "elapsed":
            seconds = int(self.after.total_seconds()) if self.after else 0
            return f"notice:elapsed-{seconds}s:{self.template}"
        return f"notice:entered:{self.template}"


@dataclass(frozen=True, slots=True)
class AccessStep:
    after: timedelta
    level: AccessLevel


@dataclass(frozen=True, slots=True)
class LanePolicy:
    retries: tuple[timedelta, ...]  # offsets from the case opening, one per retry
    max_attempts: int
    align: Align
    notices: tuple[Checkpoint, ...]
    access: tuple[AccessStep, ...]
    end_after: timedelta
    end_outcome: EndOutcome
    # align: learned. This lane's own `timing.learned_min_value_share` (None: the policy's):
    # a charge after a payday is worth more than one more try with a reluctant issuer.
    learned_min_value_share: float | None = None


@dataclass(frozen=True, slots=True)
class Timing:
    local_hours: tuple[int, int] = (8, 20)
    payday_window: timedelta = timedelta(days=4)
    customer_fix_delay: timedelta = timedelta(minutes=5)
    technical_retries: tuple[timedelta, ...] = (
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
    )
    # align: learned. The window after each retry's offset the model may choose an hour in,
    # the attempts of history a model needs before it is trusted, and how close to the best
    # probability (relative) the earliest acceptable hour must be.
    learned_window: timedelta = timedelta(days=4)
    learned_min_rows: int = 500
    learned_tolerance: float = 0.05
    # A window whose best probability x amount (minor units) is below this is skipped, and
    # so is one whose best probability is below the floor, whatever the amount: a charge
    # that will almost surely fail costs an attempt the networks count.
    learned_min_value_minor: int = 0
    learned_min_probability: float = 0.0
    # A relative bar: this share of what one attempt recovered on average in the model's
    # training history (per currency); the higher of the two bars applies.
    learned_min_value_share: float = 0.0
    # Cold-start retries (align payday, local_hours, learned without a model) that would land
    # on a public holiday of the customer's country move to the next business day: banks and
    # issuers run on skeleton crews, salaries are not paid, customers are away.
    holidays: bool = False


@dataclass(frozen=True, slots=True)
class Escalation:
    segments: frozenset[str] = frozenset()
    min_amount_minor: Mapping[str, int] = field(default_factory=dict)  # per currency


@dataclass(frozen=True, slots=True)
class Grace:
    """Longer grace for listed segments: access steps and the case's end move this much later."""

    extend: Mapping[str, timedelta] = field(default_factory=dict)  # per customer segment

    def extension(self, segment: str | None) -> timedelta:
        return self.extend.get(segment, timedelta(0)) if segment else timedelta(0)


# How an earlier case of the customer ended, as `risk.chronic.ignore` names it.
PAST_CASE_OUTCOMES = (
    "recovered_by_retry",
    "recovered_by_customer",
    "churned",
    "written_off",
    "canceled",
    "disputed",
    "open",
)


@dataclass(frozen=True, slots=True)
class Chronic:
    """A customer with `min_cases` earlier recovery cases within `lookback` is a chronic
    failer: the retry ladder is cut to `max_retries` and the customer is asked instead."""

    lookback: timedelta
    min_cases: int
    max_retries: int
    ignore: frozenset[str] = frozenset()  # outcomes of earlier cases that do not count
    notice: Checkpoint | None = None  # sent when the case opens, besides the lane's notices


@dataclass(frozen=True, slots=True)
class CardsDeclined:
    within: timedelta
    min_cards: int  # different cards of one customer declined within `within`


@dataclass(frozen=True, slots=True)
class CardUpdates:
    within: timedelta
    min_updates: int  # card updates within `within`
    min_declines: int  # declines after the first of them


@dataclass(frozen=True, slots=True)
class PriorFraud:
    lookback: timedelta  # a fraud decline or a dispute on an earlier case within this


@dataclass(frozen=True, slots=True)
class CardTesting:
    """Card-testing and fraud patterns that stop a case's charges and hand it to a human."""

    cards_declined: CardsDeclined | None = None
    card_updates: CardUpdates | None = None
    prior_fraud: PriorFraud | None = None

    def horizon(self) -> timedelta | None:
        """How far back the customer's signals must reach; None: no rule is on."""
        windows = [
            w
            for w in (
                self.cards_declined.within if self.cards_declined else None,
                self.card_updates.within if self.card_updates else None,
                self.prior_fraud.lookback if self.prior_fraud else None,
            )
            if w is not None
        ]
        return max(windows, default=None)


@dataclass(frozen=True, slots=True)
class Risk:
    chronic: Chronic | None = None
    card_testing: CardTesting = CardTesting()


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    version: str
    description: str
    lanes: Mapping[Lane, LanePolicy]
    timing: Timing
    escalation: Escalation
    digest: str  # content hash: which exact policy a case ran under
    risk: Risk = Risk()
    grace: Grace = Grace()
    # channel -> channel: where a notice goes when its own channel cannot reach the customer
    # (a hard bounce); one hop, so a fallback never falls back again.
    fallback: Mapping[str, str] = field(default_factory=dict)

    def lane(self, lane: Lane) -> LanePolicy:
        return self.lanes[lane]


class PolicyError(ValueError):
    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid policy:\n" + "\n".join(f"  - {p}" for p in self.problems))


_CHECKPOINT_KINDS = ("entered", "failure", "every_failure", "elapsed", "retries_exhausted")


class _Reader:
    """Collects every problem instead of stopping at the first: users fix files in one go."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def duration(self, path: str, value: Any) -> timedelta | None:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(path, str(exc))
            return None

    def mapping(self, path: str, value: Any) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a mapping, got {type(value).__name__}")
            return {}
        return value

    def sequence(self, path: str, value: Any) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"expected a list, got {type(value).__name__}")
            return []
        return value

    def unknown_keys(self, path: str, data: Mapping[str, Any], allowed: set[str]) -> None:
        for key in sorted(set(data) - allowed, key=str):
            self.fail(
                f"{path}.{key}" if path else key, f"unknown field (allowed: {sorted(allowed)})"
            )


def parse_policy(data: Any) -> Policy:
    r = _Reader()
    root = r.mapping("(policy)", data)
    r.unknown_keys(
        "",
        root,
        {
            "name",
            "version",
            "description",
            "lanes",
            "timing",
            "escalation",
            "risk",
            "grace",
            "channels",
        },
    )
    name = root.get("name")
    if not isinstance(name, str) or not name:
        r.fail("name", "required, a non-empty string")
    timing = _timing(r, root.get("timing") or {})
    escalation = _escalation(r, root.get("escalation") or {})
    risk = _risk(r, root.get("risk") or {})
    grace = _grace(r, root.get("grace") or {})
    fallback = _fallback(r, root.get("channels") or {})
    lanes_raw = r.mapping("lanes", root.get("lanes"))
    lanes: dict[Lane, LanePolicy] = {}
    for key in lanes_raw:
        if key not in Lane.__members__.values():
            r.fail(f"lanes.{key}", f"unknown lane (lanes: {[lane.value for lane in Lane]})")
    for lane in Lane:
        if lane.value not in lanes_raw:
            r.fail(f"lanes.{lane.value}", "missing: every lane needs a row")
            continue
        parsed = _lane(r, f"lanes.{lane.value}", lane, lanes_raw[lane.value])
        if parsed is not None:
            lanes[lane] = parsed
    if r.problems:
        raise PolicyError(r.problems)
    digest = hashlib.sha256(json.dumps(root, sort_keys=True, default=str).encode()).hexdigest()
    return Policy(
        name=str(name),
        version=str(root.get("version", "1")),
        description=str(root.get("description", "")),
        lanes=lanes,
        timing=timing,
        escalation=escalation,
        digest=digest[:12],
        risk=risk,
        grace=grace,
        fallback=fallback,
    )


def _fallback(r: _Reader, raw: Any) -> dict[str, str]:
    block = r.mapping("channels", raw)
    r.unknown_keys("channels", block, {"fallback"})
    found: dict[str, str] = {}
    for source, target in r.mapping("channels.fallback", block.get("fallback") or {}).items():
        path = f"channels.fallback.{source}"
        if not isinstance(target, str) or not target:
            r.fail(path, "expected a channel name")
        elif target == source:
            r.fail(path, "a channel cannot fall back to itself")
        else:
            found[str(source)] = target
    return found


def _timing(r: _Reader, raw: Any) -> Timing:
    data = r.mapping("timing", raw)
    r.unknown_keys(
        "timing",
        data,
        {
            "local_hours",
            "payday_window",
            "customer_fix_delay",
            "technical_retries",
            "learned_window",
            "learned_min_rows",
            "learned_tolerance",
            "learned_min_value_minor",
            "learned_min_probability",
            "learned_min_value_share",
            "holidays",
        },
    )
    default = Timing()
    hours = data.get("local_hours", list(default.local_hours))
    if (
        not isinstance(hours, list)
        or len(hours) != 2
        or not all(isinstance(h, int) and 0 <= h <= 24 for h in hours)
        or hours[0] >= hours[1]
    ):
        r.fail("timing.local_hours", "expected [start, end] hours with 0 <= start < end <= 24")
        hours = list(default.local_hours)
    window = r.duration("timing.payday_window", data.get("payday_window", "4d"))
    fix = r.duration("timing.customer_fix_delay", data.get("customer_fix_delay", "5m"))
    technical = [
        r.duration(f"timing.technical_retries[{i}]", v)
        for i, v in enumerate(r.sequence("timing.technical_retries", data.get("technical_retries")))
    ]
    learned_window = r.duration("timing.learned_window", data.get("learned_window", "4d"))
    min_rows = data.get("learned_min_rows", default.learned_min_rows)
    if type(min_rows) is not int or min_rows < 0:
        r.fail("timing.learned_min_rows", "expected a non-negative integer (attempts of history)")
        min_rows = default.learned_min_rows
    tolerance = data.get("learned_tolerance", default.learned_tolerance)
    if type(tolerance) not in (int, float) or not 0 <= tolerance < 1:
        r.fail("timing.learned_tolerance", "expected a number with 0 <= tolerance < 1")
        tolerance = default.learned_tolerance
    min_value = data.get("learned_min_value_minor", default.learned_min_value_minor)
    if type(min_value) is not int or min_value < 0:
        r.fail(
            "timing.learned_min_value_minor",
            "expected a non-negative integer (probability x amount, in minor units)",
        )
        min_value = default.learned_min_value_minor
    min_p = data.get("learned_min_probability", default.learned_min_probability)
    if type(min_p) not in (int, float) or not 0 <= min_p < 1:
        r.fail("timing.learned_min_probability", "expected a number with 0 <= probability < 1")
        min_p = default.learned_min_probability
    share = data.get("learned_min_value_share", default.learned_min_value_share)
    if type(share) not in (int, float) or not 0 <= share <= MAX_VALUE_SHARE:
        r.fail(
            "timing.learned_min_value_share",
            f"expected a number from 0 to {MAX_VALUE_SHARE} (a share of what an attempt "
            "recovered on average in the model's history)",
        )
        share = default.learned_min_value_share
    holidays = data.get("holidays", default.holidays)
    if type(holidays) is not bool:
        r.fail("timing.holidays", "expected true or false")
        holidays = default.holidays
    return Timing(
        holidays=holidays,
        learned_min_value_minor=min_value,
        learned_min_probability=float(min_p),
        learned_min_value_share=float(share),
        learned_window=learned_window or default.learned_window,
        learned_min_rows=min_rows,
        learned_tolerance=float(tolerance),
        local_hours=(hours[0], hours[1]),
        payday_window=window or default.payday_window,
        customer_fix_delay=fix or default.customer_fix_delay,
        technical_retries=tuple(t for t in technical if t is not None) or default.technical_retries,
    )


def _escalation(r: _Reader, raw: Any) -> Escalation:
    data = r.mapping("escalation", raw)
    r.unknown_keys("escalation", data, {"segments", "min_amount_minor"})
    segments = r.sequence("escalation.segments", data.get("segments"))
    amounts = r.mapping("escalation.min_amount_minor", data.get("min_amount_minor") or {})
    for currency, value in amounts.items():
        if type(value) is not int or value < 0:
            r.fail(f"escalation.min_amount_minor.{currency}", "expected a non-negative integer")
    return Escalation(frozenset(str(s) for s in segments), dict(amounts))


def _grace(r: _Reader, raw: Any) -> Grace:
    data = r.mapping("grace", raw)
    r.unknown_keys("grace", data, {"extend"})
    extend = r.mapping("grace.extend", data.get("extend") or {})
    parsed = {
        str(segment): d
        for segment, value in extend.items()
        if (d := r.duration(f"grace.extend.{segment}", value)) is not None
    }
    return Grace(parsed)


def _count(r: _Reader, path: str, value: Any, minimum: int, what: str) -> int:
    if type(value) is not int or value < minimum:
        r.fail(path, f"required, an integer >= {minimum} ({what})")
        return minimum
    return value


def _risk(r: _Reader, raw: Any) -> Risk:
    data = r.mapping("risk", raw)
    r.unknown_keys("risk", data, {"chronic", "card_testing"})
    chronic = _chronic(r, data["chronic"]) if "chronic" in data else None
    testing = r.mapping("risk.card_testing", data.get("card_testing") or {})
    r.unknown_keys("risk.card_testing", testing, {"cards_declined", "card_updates", "prior_fraud"})
    cards = updates = prior = None
    if "cards_declined" in testing:
        path = "risk.card_testing.cards_declined"
        block = r.mapping(path, testing["cards_declined"])
        r.unknown_keys(path, block, {"within", "min_cards"})
        within = r.duration(f"{path}.within", block.get("within"))
        count = _count(r, f"{path}.min_cards", block.get("min_cards"), 2, "different cards")
        cards = CardsDeclined(within, count) if within is not None else None
    if "card_updates" in testing:
        path = "risk.card_testing.card_updates"
        block = r.mapping(path, testing["card_updates"])
        r.unknown_keys(path, block, {"within", "min_updates", "min_declines"})
        within = r.duration(f"{path}.within", block.get("within"))
        n_updates = _count(r, f"{path}.min_updates", block.get("min_updates"), 1, "card updates")
        n_declines = _count(
            r, f"{path}.min_declines", block.get("min_declines"), 1, "declines after them"
        )
        updates = CardUpdates(within, n_updates, n_declines) if within is not None else None
    if "prior_fraud" in testing:
        path = "risk.card_testing.prior_fraud"
        block = r.mapping(path, testing["prior_fraud"])
        r.unknown_keys(path, block, {"lookback"})
        lookback = r.duration(f"{path}.lookback", block.get("lookback"))
        prior = PriorFraud(lookback) if lookback is not None else None
    return Risk(chronic, CardTesting(cards, updates, prior))


def _chronic(r: _Reader, raw: Any) -> Chronic | None:
    path = "risk.chronic"
    data = r.mapping(path, raw)
    r.unknown_keys(path, data, {"lookback", "min_cases", "max_retries", "ignore", "notice"})
    lookback = r.duration(f"{path}.lookback", data.get("lookback"))
    min_cases = _count(r, f"{path}.min_cases", data.get("min_cases"), 1, "earlier cases")
    max_retries = _count(r, f"{path}.max_retries", data.get("max_retries"), 0, "retries")
    ignore = r.sequence(f"{path}.ignore", data.get("ignore"))
    for i, outcome in enumerate(ignore):
        if outcome not in PAST_CASE_OUTCOMES:
            r.fail(f"{path}.ignore[{i}]", f"expected one of {list(PAST_CASE_OUTCOMES)}")
    notice = None
    if "notice" in data:
        block = r.mapping(f"{path}.notice", data["notice"])
        r.unknown_keys(f"{path}.notice", block, {"template", "channel"})
        # Sent once, like a lane's `entered` checkpoint of the same template (the customer
        # never gets it twice).
        notice = _checkpoint(r, f"{path}.notice", {**block, "when": "entered"})
    if lookback is None:
        return None
    return Chronic(lookback, min_cases, max_retries, frozenset(map(str, ignore)), notice)


def _lane(r: _Reader, path: str, lane: Lane, raw: Any) -> LanePolicy | None:
    data = r.mapping(path, raw)
    r.unknown_keys(
        path,
        data,
        {"retries", "max_attempts", "align", "notices", "access", "end", "learned_min_value_share"},
    )
    retries = [
        r.duration(f"{path}.retries[{i}]", v)
        for i, v in enumerate(r.sequence(f"{path}.retries", data.get("retries")))
    ]
    offsets = tuple(o for o in retries if o is not None)
    if list(offsets) != sorted(offsets):
        r.fail(f"{path}.retries", "offsets must be in increasing order")
    if lane in NEVER_RETRY_LANES and offsets:
        r.fail(f"{path}.retries", f"lane {lane.value} may never be retried; leave it empty")
    max_attempts = data.get("max_attempts", len(offsets))
    if type(max_attempts) is not int or max_attempts < 0:
        r.fail(f"{path}.max_attempts", "expected a non-negative integer")
        max_attempts = 0
    try:
        align = Align(data.get("align", "local_hours"))
    except ValueError:
        r.fail(f"{path}.align", f"expected one of {[a.value for a in Align]}")
        align = Align.NONE
    if align is Align.LEARNED and lane in NEVER_RETRY_LANES:
        r.fail(f"{path}.align", f"lane {lane.value} is never retried: nothing to time")
    share = data.get("learned_min_value_share")
    if share is not None:
        if align is not Align.LEARNED:
            r.fail(f"{path}.learned_min_value_share", "only a lane with align: learned has one")
            share = None
        elif type(share) not in (int, float) or not 0 <= share <= MAX_VALUE_SHARE:
            r.fail(
                f"{path}.learned_min_value_share",
                f"expected a number from 0 to {MAX_VALUE_SHARE} (a share of what an attempt "
                "recovered on average in the model's history)",
            )
            share = None
    notices = tuple(
        c
        for i, item in enumerate(r.sequence(f"{path}.notices", data.get("notices")))
        if (c := _checkpoint(r, f"{path}.notices[{i}]", item)) is not None
    )
    access = tuple(
        s
        for i, item in enumerate(r.sequence(f"{path}.access", data.get("access")))
        if (s := _access_step(r, f"{path}.access[{i}]", item)) is not None
    )
    if [s.level.rank for s in access] != sorted({s.level.rank for s in access}):
        r.fail(f"{path}.access", "steps must go grace -> limited -> suspended, each once")
    end = r.mapping(f"{path}.end", data.get("end"))
    r.unknown_keys(f"{path}.end", end, {"after", "outcome"})
    end_after = r.duration(f"{path}.end.after", end.get("after"))
    try:
        outcome = EndOutcome(end.get("outcome", "churned"))
    except ValueError:
        r.fail(f"{path}.end.outcome", f"expected one of {[o.value for o in EndOutcome]}")
        outcome = EndOutcome.CHURNED
    if end_after is not None:
        for i, offset in enumerate(retries):
            if offset is not None and offset >= end_after:
                r.fail(f"{path}.retries[{i}]", "falls at or after the end of the case")
    if end_after is None:
        return None
    return LanePolicy(
        offsets,
        max_attempts,
        align,
        notices,
        access,
        end_after,
        outcome,
        None if share is None else float(share),
    )


def _checkpoint(r: _Reader, path: str, raw: Any) -> Checkpoint | None:
    data = r.mapping(path, raw)
    r.unknown_keys(path, data, {"when", "template", "channel", "count", "after"})
    when = data.get("when")
    if when not in _CHECKPOINT_KINDS:
        r.fail(f"{path}.when", f"expected one of {list(_CHECKPOINT_KINDS)}")
        return None
    template = data.get("template")
    if not isinstance(template, str) or not template:
        r.fail(f"{path}.template", "required, the name of a message template")
        return None
    count = data.get("count")
    if when == "failure" and (type(count) is not int or count < 1):
        r.fail(f"{path}.count", "when: failure needs count >= 1 (the first failure is 1)")
        return None
    after = None
    if when == "elapsed":
        after = r.duration(f"{path}.after", data.get("after"))
        if after is None:
            return None
    return Checkpoint(when, template, str(data.get("channel", "email")), count, after)


def _access_step(r: _Reader, path: str, raw: Any) -> AccessStep | None:
    data = r.mapping(path, raw)
    r.unknown_keys(path, data, {"after", "level"})
    after = r.duration(f"{path}.after", data.get("after"))
    try:
        level = AccessLevel(str(data.get("level")))
    except ValueError:
        r.fail(f"{path}.level", "expected grace, limited or suspended")
        return None
    if level is AccessLevel.FULL:
        r.fail(f"{path}.level", "full access is what recovery restores, not a dunning step")
        return None
    return None if after is None else AccessStep(after, level)
