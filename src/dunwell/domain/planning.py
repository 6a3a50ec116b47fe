"""Planning: from a case's state and its lane's policy row, the set of future actions.

The plan is recomputed after every change and is complete: the shell keeps action rows in
step with it (same key, same row), so a changed lane or a card update simply replaces the plan.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from operator import attrgetter, itemgetter

from dunwell.domain.case import ActionType, AttemptStatus, PlannedAction, RecoveryCase, Stage
from dunwell.domain.decision import Context, Explanation
from dunwell.domain.durations import format_duration
from dunwell.domain.guardrails import check_attempt
from dunwell.domain.lanes import SELF_RETRYING_PROVIDERS, Lane
from dunwell.domain.memo import IdentityMemo
from dunwell.domain.policy import (
    AccessLevel,
    AccessStep,
    Checkpoint,
    EndOutcome,
    LanePolicy,
    Policy,
)
from dunwell.domain.provider_choice import choose_provider
from dunwell.domain.records import evolve
from dunwell.domain.scoring import NoRetry, learned_retry_at
from dunwell.domain.timing import customer_zone, into_local_hours, next_retry_at


def replan(
    case: RecoveryCase, policy: Policy, now: datetime, ctx: Context
) -> tuple[RecoveryCase, list[Explanation]]:
    if not case.is_open:
        return evolve(case, plan=(), stage=None), []
    lane_policy = policy.lane(case.lane)
    extension = grace_extension(case, policy)
    access_steps, end_texts = _lane_texts(case.lane, lane_policy, extension, case.customer.segment)
    end_at = max(case.opened_at + lane_policy.end_after + extension, now)
    notes: list[Explanation] = []
    plan: list[PlannedAction] = []

    retry, ladder_over = _plan_retry(case, lane_policy, policy, now, end_at, ctx, notes)
    if retry is not None:
        plan.append(retry)
    if case.escalated:
        notes.append(
            Explanation(
                "policy.escalation", "customer notices are held while a human owns the case"
            )
        )
    else:
        plan.extend(_plan_notices(case, lane_policy, policy, now, end_at, ladder_over))
    access_rank = case.access.rank
    for after, rank, key, rule, reason, params in access_steps:
        due = max(case.opened_at + after + extension, now)
        if rank > access_rank and due < end_at:
            plan.append(PlannedAction(key, ActionType.ACCESS, due, rule, reason, params))
    rule, reason, params = end_texts
    plan.append(PlannedAction("end", ActionType.END, end_at, rule, reason, params))
    if case.escalated:
        stage = Stage.ESCALATED
    elif retry is not None or case.in_flight is not None:
        stage = Stage.RETRYING
    else:
        stage = Stage.AWAITING_CUSTOMER
    return evolve(case, plan=tuple(sorted(plan, key=_PLAN_ORDER)), stage=stage), notes


_PLAN_ORDER = attrgetter("due_at", "key")

# The texts of the access and end actions depend on the lane's policy row and the grace, not
# on the case: formatted once per lane, policy row, grace and segment, not on every replan.
_Params = tuple[tuple[str, str], ...]
_AccessStep = tuple[timedelta, int, str, str, str, _Params]  # after, rank, key, rule, reason
_LaneTexts = tuple[tuple[_AccessStep, ...], tuple[str, str, _Params]]
_LANE_TEXTS: IdentityMemo[_LaneTexts] = IdentityMemo(1024)


def _lane_texts(
    lane: Lane, lane_policy: LanePolicy, extension: timedelta, segment: str | None
) -> _LaneTexts:
    """The access steps (after, rank, key, rule, reason, params) and the end's texts."""
    if not extension:
        segment = None  # named only in the grace text
    key = (lane, id(lane_policy), extension, segment)
    return _LANE_TEXTS.get(
        key, (lane_policy,), lambda: _format_lane_texts(lane, lane_policy, extension, segment)
    )


def _format_lane_texts(
    lane: Lane, lane_policy: LanePolicy, extension: timedelta, segment: str | None
) -> _LaneTexts:
    grace = ""
    if extension:
        grace = f" + {format_duration(extension)} grace for segment {segment}"
    steps = tuple(
        (step.after, step.level.rank, *_access_texts(lane, step, grace))
        for step in lane_policy.access
    )
    return steps, _end_texts(lane, lane_policy.end_outcome, lane_policy.end_after, grace)


def _access_texts(lane: Lane, step: AccessStep, grace: str) -> tuple[str, str, str, _Params]:
    """An access step's key, rule, reason and params."""
    level = step.level.value
    return (
        f"access:{level}",
        f"policy.lanes.{lane.value}.access" + (" + policy.grace" if grace else ""),
        f"access becomes {level} {format_duration(step.after)}{grace} after the first failure",
        (("level", level),),
    )


def _end_texts(
    lane: Lane, outcome: EndOutcome, end_after: timedelta, grace: str
) -> tuple[str, str, _Params]:
    """The end action's rule, reason and params."""
    return (
        f"policy.lanes.{lane.value}.end" + (" + policy.grace" if grace else ""),
        f"the case ends {outcome.value} {format_duration(end_after)}{grace} after the first "
        "failure unless recovered",
        (("outcome", outcome.value),),
    )


def access_due(
    case: RecoveryCase, policy: Policy, now: datetime
) -> list[tuple[AccessLevel, str, str]]:
    """The lane's access steps already due at `now` (a step `after: 0m`, when the case
    opens), as (level, rule, reason), in the order the runner would take them as actions due
    at once (by key), each only if it still raises the access level: the opening decision
    takes them itself instead of planning them (one engine event less per case)."""
    if not case.is_open:
        return []
    lane_policy = policy.lane(case.lane)
    extension = grace_extension(case, policy)
    access_steps, _ = _lane_texts(case.lane, lane_policy, extension, case.customer.segment)
    if case.opened_at + lane_policy.end_after + extension <= now:
        return []  # the case ends now: its end action takes over
    rank, taken = case.access.rank, []
    for after, step_rank, _key, rule, reason, params in sorted(access_steps, key=itemgetter(2)):
        if step_rank > rank and case.opened_at + after + extension <= now:
            taken.append((AccessLevel(dict(params)["level"]), rule, reason))
            rank = step_rank
    return taken


def grace_extension(case: RecoveryCase, policy: Policy) -> timedelta:
    """How much later the case's access steps and end fall for its customer's segment."""
    return policy.grace.extension(case.customer.segment)


def _plan_retry(
    case: RecoveryCase,
    lane_policy: LanePolicy,
    policy: Policy,
    now: datetime,
    end_at: datetime,
    ctx: Context,
    notes: list[Explanation],
) -> tuple[PlannedAction | None, bool]:
    """The next retry, and whether the lane's ladder is over: no retry although the lane
    retries and nothing else is pending (it ran out, was capped, the model saw no window
    worth a charge, a guardrail closed it, or the next one would fall after the end)."""
    if case.in_flight is not None:
        return None, False  # its outcome replans
    if case.risk_hold is not None:
        notes.append(Explanation("risk.hold", f"no charge is planned: {case.risk_hold}"))
        return None, False
    if case.decline.provider in SELF_RETRYING_PROVIDERS:
        notes.append(
            Explanation(
                "provider.retries_itself",
                f"{case.decline.provider} retries the renewal itself and only it can charge: "
                "no retry is planned; notices and access steps go on",
                (("provider", case.decline.provider),),
            )
        )
        return None, False
    if case.provider_retries_on:
        notes.append(
            Explanation(
                "provider.manages_retries",
                f"{case.provider_retrying}'s own retries are on for this invoice: dunwell plans "
                "no charge until it reports giving up; notices and access steps go on",
                (("provider", case.provider_retrying or ""),),
            )
        )
        return None, False
    key = f"retry:{len(case.attempts) + 1}"
    ladder_over = False  # only the lane's own ladder can run out
    last = case.attempts[-1] if case.attempts else None
    technical = policy.timing.technical_retries
    if case.customer_fixed_at is not None:
        due = max(case.customer_fixed_at + policy.timing.customer_fix_delay, now)
        rule, reason = (
            "policy.timing.customer_fix_delay",
            ("the customer fixed the payment method: retry right away"),
        )
    elif last is not None and last.status is AttemptStatus.ERRORED and last.finished_at:
        # The outcome is unknown: ask again with the same attempt (the same idempotency key)
        # until the provider answers, backing off to the last delay; never a new charge.
        step = min(max(case.technical_retries, 1), len(technical)) - 1
        delay = technical[step]
        due = max(last.finished_at + delay, now)
        rule = f"policy.timing.technical_retries[{step}]"
        reason = (
            f"technical retry {case.technical_retries} of attempt {last.number} after a provider "
            f"error, {format_duration(delay)} later, with the same idempotency key; it does not "
            "count against network caps"
        )
    else:
        ladder_over = bool(lane_policy.retries)
        ladder = lane_policy
        allowed = min(lane_policy.max_attempts, len(lane_policy.retries))
        if case.retry_cap is not None and case.retry_cap < allowed:
            ladder = evolve(lane_policy, max_attempts=case.retry_cap)
        timed = next_retry_at(
            case.opened_at,
            case.attempts_made,
            ladder,
            policy.timing,
            case.customer.timezone,
            case.lane.value,
            case.customer.country,
        )
        if timed is None and ladder is not lane_policy:
            notes.append(
                Explanation(
                    "risk.chronic",
                    f"no retry left: {case.attempts_made} made, retries are capped at "
                    f"{case.retry_cap} for a chronic failer; the customer is asked instead",
                    (("retry_cap", str(case.retry_cap)),),
                )
            )
            return None, ladder_over
        if timed is None:
            notes.append(
                Explanation(
                    f"policy.lanes.{case.lane.value}.retries",
                    f"no retry left in lane {case.lane.value}: {case.attempts_made} made, "
                    f"the policy allows {min(lane_policy.max_attempts, len(lane_policy.retries))}",
                )
            )
            return None, ladder_over
        due, rule, reason = max(timed.due_at, now), timed.rule, timed.reason
        learned = learned_retry_at(case, ladder, policy.timing, now, ctx.scorer)
        if isinstance(learned, NoRetry):
            notes.append(Explanation(learned.rule, learned.reason))
            return None, ladder_over
        if learned is not None:
            due, rule, reason = learned.due_at, learned.rule, learned.reason

    verdict = check_attempt(case, due, ctx.ledger, ctx.limits)
    if not verdict.allowed:
        notes.append(Explanation(verdict.rule, verdict.reason, verdict.inputs))
        if verdict.not_before is None:
            return None, ladder_over
        zone = customer_zone(case.customer.timezone)
        due = into_local_hours(verdict.not_before, zone, policy.timing.local_hours)
        rule, reason = f"{rule} + {verdict.rule}", f"{reason}; delayed: {verdict.reason}"
    choice = choose_provider(case, ctx, due)
    if choice.provider is None and choice.not_before is not None:
        notes.append(choice.explanation)
        due = choice.not_before
        rule, reason = f"{rule} + {choice.explanation.rule}", f"{reason}; delayed: provider paused"
    if due >= end_at:
        notes.append(
            Explanation(
                rule, f"the next retry would fall after the case ends ({end_at.isoformat()})"
            )
        )
        return None, ladder_over
    # The provider is chosen again when the retry falls due (pauses change); this one is
    # shown in the plan.
    params = (("provider", choice.provider),) if choice.provider else ()
    return PlannedAction(key, ActionType.RETRY, due, rule, reason, params), False


def _plan_notices(
    case: RecoveryCase,
    lane_policy: LanePolicy,
    policy: Policy,
    now: datetime,
    end_at: datetime,
    exhausted: bool = False,
) -> list[PlannedAction]:
    fired = {n.key for n in case.notices}
    planned: list[PlannedAction] = []
    chronic = policy.risk.chronic
    # A chronic failer is asked to fix the payment at once: retries are unlikely to.
    extra = chronic.notice if case.retry_cap is not None and chronic is not None else None
    for rule, checkpoint, fixed_key, fixed_reason, params in _checkpoints(
        case.lane, lane_policy.notices, extra
    ):
        key = fixed_key if fixed_key is not None else checkpoint.key(case.failures)
        if key in fired or any(p.key == key for p in planned):
            continue
        if checkpoint.when == "entered":
            due = now
        elif checkpoint.when == "retries_exhausted":
            if not exhausted or _asked_since_last_failure(case, planned, checkpoint.template):
                continue
            due = now
        elif checkpoint.when in ("failure", "every_failure"):
            if checkpoint.when == "failure" and case.failures < (checkpoint.count or 1):
                continue
            due = now
        else:
            assert checkpoint.after is not None
            due = max(case.opened_at + checkpoint.after, now)
        if due >= end_at:
            continue
        reason = fixed_reason
        if reason is None:
            reason = _reason(
                f"failed charge number {case.failures}", checkpoint.template, checkpoint.channel
            )
        planned.append(PlannedAction(key, ActionType.NOTICE, due, rule, reason, params))
    return planned


def _reason(why: str, template: str, channel: str) -> str:
    return f"checkpoint: {why}; send {template} by {channel}"


# A lane's notice checkpoints as every replan reads them: in order (the end of the ladder
# last: it only asks what the other checkpoints have not just asked), with their rule names,
# and the keys and reasons that do not depend on the case (all but a failure count's)
# formatted once per lane and checkpoints.
_Prepared = tuple[tuple[str, Checkpoint, str | None, str | None, tuple[tuple[str, str], ...]], ...]
_CHECKPOINTS: IdentityMemo[_Prepared] = IdentityMemo(1024)


def _checkpoints(
    lane: Lane, notices: tuple[Checkpoint, ...], extra: Checkpoint | None
) -> _Prepared:
    return _CHECKPOINTS.get(
        (lane, id(notices), id(extra)),
        (notices, extra),
        lambda: _prepare_checkpoints(lane, notices, extra),
    )


def _prepare_checkpoints(
    lane: Lane, notices: tuple[Checkpoint, ...], extra: Checkpoint | None
) -> _Prepared:
    rules = [f"policy.lanes.{lane.value}.notices[{i}]" for i in range(len(notices))]
    checkpoints = list(zip(rules, notices, strict=True))
    if extra is not None:
        checkpoints.insert(0, ("risk.chronic.notice", extra))
    checkpoints.sort(key=lambda item: item[1].when == "retries_exhausted")
    prepared = []
    for rule, checkpoint in checkpoints:
        if checkpoint.when == "entered" and rule == "risk.chronic.notice":
            why: str | None = "the customer is a chronic failer: ask them to fix the payment"
        elif checkpoint.when == "entered":
            why = f"the case is in lane {lane.value}"
        elif checkpoint.when == "retries_exhausted":
            why = "no retry is left on the ladder: the customer is asked instead"
        elif checkpoint.when in ("failure", "every_failure"):
            why = None  # the failure count is the case's
        else:
            assert checkpoint.after is not None
            why = f"{format_duration(checkpoint.after)} after the first failure"
        template, channel = checkpoint.template, checkpoint.channel
        prepared.append(
            (
                rule,
                checkpoint,
                None if checkpoint.when == "every_failure" else checkpoint.key(0),
                None if why is None else _reason(why, template, channel),
                (("template", template), ("channel", channel)),
            )
        )
    return tuple(prepared)


def _asked_since_last_failure(
    case: RecoveryCase, planned: list[PlannedAction], template: str
) -> bool:
    """Whether the customer got (or is getting now) this very message since the last failed
    charge: then the end of the ladder has nothing new to ask, and a second copy of the same
    message at the same moment would only be noise."""
    if any(("template", template) in p.params for p in planned):
        return True
    since = case.last_failure_at or case.opened_at
    return any(n.template == template and n.created_at >= since for n in case.notices)
