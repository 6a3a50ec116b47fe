"""`decide(case, event, policy, now, ctx) -> Decision`: every rule of dunwell, as one function.

Load, decide, save: the shell loads the case (or None) and the facts in `ctx`, calls this,
and persists the result in one transaction. Nothing here reads a clock or touches I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from dunwell.domain.case import (
    ActionType,
    Attempt,
    AttemptStatus,
    CaseStatus,
    DeclineInfo,
    Notice,
    RecoveryCase,
    case_id_for,
    child_id,
)
from dunwell.domain.decision import (
    ChangeAccess,
    Charge,
    Context,
    Decision,
    Effect,
    Escalate,
    Explanation,
    SendNotice,
)
from dunwell.domain.declines import Classification, classify_decline
from dunwell.domain.durations import format_duration
from dunwell.domain.events import (
    ActionDue,
    AttemptErrored,
    CustomerAuthenticated,
    DisputeOpened,
    Event,
    NoticeDelivered,
    PaymentFailed,
    PaymentMethodUpdated,
    PaymentSucceeded,
    ProviderRetriesExhausted,
    SubscriptionCanceled,
)
from dunwell.domain.guardrails import check_attempt
from dunwell.domain.history import CustomerSignal, SignalKind
from dunwell.domain.lanes import SELF_RETRYING_PROVIDERS, Lane
from dunwell.domain.ledger import LedgerEntry
from dunwell.domain.planning import access_due, grace_extension, replan
from dunwell.domain.policy import AccessLevel, Policy
from dunwell.domain.provider_choice import choose_provider
from dunwell.domain.records import evolve
from dunwell.domain.risk import card_testing, chronic_cap


def decide(
    case: RecoveryCase | None, event: Event, policy: Policy, now: datetime, ctx: Context
) -> Decision:
    handler: Callable[..., Decision] = _HANDLERS[type(event)]
    decision = handler(case, event, policy, now, ctx)
    return _share_new_blocks(case, decision, now)


def _share_new_blocks(case: RecoveryCase | None, decision: Decision, now: datetime) -> Decision:
    """What this decision learned about the card goes into the per-card ledger, so every case
    charging it is held to it too: a never-retry block, an advice code's wait."""
    if decision.case is None:
        return decision
    before = case.blocked_credentials if case is not None else frozenset()
    markers = [
        LedgerEntry(c, now, counted=False, never_retry=True)
        for c in sorted(decision.case.blocked_credentials - before)
    ]
    wait = decision.case.not_before
    if wait is not None and (case is None or case.not_before != wait):
        credential = decision.case.payment_method.credential_key
        markers.append(LedgerEntry(credential, now, counted=False, wait_until=wait))
    if not markers:
        return decision
    return evolve(decision, ledger_entries=(*decision.ledger_entries, *markers))


def _ignored(case: RecoveryCase | None, rule: str, text: str, **kw: Any) -> Decision:
    return Decision("ignored", case, (Explanation(rule, text),), **kw)


def _updated(
    case: RecoveryCase,
    policy: Policy,
    now: datetime,
    ctx: Context,
    notes: list[Explanation],
    effects: tuple[Effect, ...] = (),
    **kw: Any,
) -> Decision:
    planned, plan_notes = replan(case, policy, now, ctx)
    outcome = "updated" if planned.is_open else "closed"
    return Decision(outcome, planned, tuple(notes + plan_notes), effects, **kw)


def _found(event: PaymentFailed, ctx: Context) -> Classification:
    # A decline without a provider of its own speaks the event's provider's codes.
    report = event.decline
    if not report.provider:
        report = evolve(report, provider=event.provider)
    return classify_decline(report, event.payment_method.brand, ctx.taxonomy)


def _classify(event: PaymentFailed, found: Classification) -> tuple[DeclineInfo, Explanation]:
    row = found.source
    info = DeclineInfo(
        provider=event.provider,  # who charged: later attempts go through it too
        provider_code=event.decline.provider_code,
        network_code=event.decline.network_code,
        advice_code=event.decline.advice_code,
        message=event.decline.message,
        lane=found.lane,
        rule=found.rule,
        retry_allowed=found.retry_allowed,
        network_category=found.network_category,
        known=found.known,
        code_provider=found.provider,
        source_file=row.file if row else None,
        source_line=row.line if row else None,
        source_code=row.code if row else None,
        source_description=row.description if row else None,
        source_url=row.source if row else None,
    )
    inputs = (
        ("provider", found.provider or ""),
        ("provider_code", event.decline.provider_code or ""),
        ("network_code", event.decline.network_code or ""),
        ("advice_code", event.decline.advice_code or ""),
        ("brand", event.payment_method.brand or ""),
    )
    rule = "declines.classify" if found.known else "declines.unknown_code"
    return info, Explanation(rule, found.explain(), inputs)


def _after_decline(
    case: RecoveryCase,
    event: PaymentFailed,
    info: DeclineInfo,
    found: Classification,
    failures: int,
) -> RecoveryCase:
    """The case as a decline leaves it, with `failures` failed charges (set here, in the same
    copy: the case has over thirty fields)."""
    blocked = case.blocked_credentials
    if not found.retry_allowed:
        blocked = blocked | {event.payment_method.credential_key}
    not_before = event.occurred_at + found.retry_after if found.retry_after else None
    if case.not_before is not None and (
        case.payment_method.credential_key == event.payment_method.credential_key
    ):
        # A later decline on the same card does not shorten an advice code's wait.
        not_before = max(not_before or case.not_before, case.not_before)
    return evolve(
        case,
        decline=info,
        payment_method=event.payment_method,
        blocked_credentials=blocked,
        not_before=not_before,
        last_failure_at=event.occurred_at,
        technical_retries=0,
        failures=failures,
    )


def _on_payment_failed(
    case: RecoveryCase | None, event: PaymentFailed, policy: Policy, now: datetime, ctx: Context
) -> Decision:
    found = _found(event, ctx)  # classified once: the lane, the retry rules, the wait
    info, why = _classify(event, found)
    if case is None:
        if ctx.invoice_paid_at is not None:
            return _ignored(
                None,
                "ingest.invoice_already_paid",
                f"invoice {event.invoice_id} was paid at {ctx.invoice_paid_at.isoformat()}: "
                "a failure reported for it opens no case",
            )
        return _open(event, found, info, why, policy, now, ctx)
    if not case.is_open:
        return _ignored(case, "case.closed", f"the case is already {case.status.value}")
    entries: tuple[LedgerEntry, ...] = ()
    if event.attempt_id is not None:
        attempt = next((a for a in case.attempts if a.id == event.attempt_id), None)
        if attempt is None or attempt.status is not AttemptStatus.IN_FLIGHT:
            return _ignored(
                case, "case.attempt_settled", f"attempt {event.attempt_id} has no open outcome"
            )
        done = evolve(
            attempt,
            status=AttemptStatus.FAILED,
            finished_at=event.occurred_at,
            provider_code=event.decline.provider_code,
        )
        case = evolve(
            case, attempts=tuple(done if a.id == attempt.id else a for a in case.attempts)
        )
        if attempt.payment_method_token != case.payment_method.token:
            return _decline_of_replaced_method(case, event, found, why, policy, now, ctx)
    else:
        if case.last_failure_at is not None and event.occurred_at <= case.last_failure_at:
            return _ignored(
                case, "case.stale_failure", "a failure not newer than the last one known"
            )
        # A decline dunwell did not make (the provider's own retry): it counts all the same.
        entries = (LedgerEntry(event.payment_method.credential_key, event.occurred_at),)
    case = _after_decline(case, event, info, found, failures=case.failures + 1)
    signal = _decline_signal(case, event, info.lane)
    case, risk_notes, effects = _screen(case, signal, policy, now, ctx)
    return _updated(
        case,
        policy,
        now,
        ctx,
        [why, *risk_notes],
        effects,
        ledger_entries=entries,
        signals=(signal,),
    )


def _decline_signal(case: RecoveryCase, event: PaymentFailed, lane: Lane) -> CustomerSignal:
    kind = SignalKind.FRAUD_DECLINE if lane is Lane.FRAUD_SUSPECTED else SignalKind.DECLINE
    return CustomerSignal(
        kind, event.occurred_at, event.payment_method.credential_key, case.id, event.id
    )


def _screen(
    case: RecoveryCase, signal: CustomerSignal, policy: Policy, now: datetime, ctx: Context
) -> tuple[RecoveryCase, list[Explanation], tuple[Effect, ...]]:
    """Card-testing and fraud patterns (policy `risk.card_testing`) over the customer's
    signals, this event's included: one that trips stops the case's charges for good and
    hands it to a human."""
    if case.risk_hold is not None:
        return case, [], ()
    found = card_testing((*ctx.history.signals, signal), case.id, policy.risk.card_testing, now)
    if found is None:
        return case, [], ()
    held = evolve(case, risk_hold=found.text, escalated=True)
    return held, [found], (Escalate(case.id, found.text),)


def _decline_of_replaced_method(
    case: RecoveryCase,
    event: PaymentFailed,
    found: Classification,
    why: Explanation,
    policy: Policy,
    now: datetime,
    ctx: Context,
) -> Decision:
    """The customer replaced the payment method while this attempt was in flight: the decline
    is about the old one. It counts, and may block the old credential; the new one stays."""
    blocked = case.blocked_credentials
    if not found.retry_allowed:
        blocked = blocked | {event.payment_method.credential_key}
    case = evolve(case, failures=case.failures + 1, blocked_credentials=blocked)
    note = Explanation(
        "case.decline_of_replaced_method",
        "the declined attempt used the payment method the customer has since replaced; "
        "the new one is kept and retried",
    )
    signal = _decline_signal(case, event, found.lane)
    case, risk_notes, effects = _screen(case, signal, policy, now, ctx)
    return _updated(case, policy, now, ctx, [why, note, *risk_notes], effects, signals=(signal,))


def _open(
    event: PaymentFailed,
    found: Classification,
    info: DeclineInfo,
    why: Explanation,
    policy: Policy,
    now: datetime,
    ctx: Context,
) -> Decision:
    opened_at = min(event.occurred_at, now)
    case = RecoveryCase(
        id=case_id_for(ctx.tenant_id, event.invoice_id),
        tenant_id=ctx.tenant_id,
        invoice_id=event.invoice_id,
        customer=event.customer,
        subscription=event.subscription,
        amount=event.amount,
        payment_method=event.payment_method,
        policy_name=policy.name,
        opened_at=opened_at,
        decline=info,
    )
    case = _after_decline(case, event, info, found, failures=case.failures)
    entry = LedgerEntry(event.payment_method.credential_key, event.occurred_at)
    ctx = evolve(ctx, ledger=ctx.ledger.with_entry(entry))
    notes = [
        Explanation(
            "case.open", f"opened for invoice {event.invoice_id} under policy {policy.name}"
        ),
        why,
    ]
    # The stores are handled by SELF_RETRYING_PROVIDERS (nobody else can ever charge them).
    if ctx.routing.retries_itself(event.provider) and event.provider not in SELF_RETRYING_PROVIDERS:
        settings = ctx.routing.settings(event.provider)
        case = evolve(case, provider_retrying=event.provider)
        after = (
            "dunwell takes over" if settings.takeover_after_provider else "the case ends churned"
        )
        notes.append(
            Explanation(
                "provider.retries_on",
                f"{event.provider}'s own retries are on for this tenant: it retries this invoice, "
                f"dunwell does not; when it gives up, {after}",
                (
                    ("provider", event.provider),
                    ("takeover_after_provider", str(settings.takeover_after_provider).lower()),
                ),
            )
        )
    capped = chronic_cap(ctx.history, policy.risk.chronic, now)
    if capped is not None:
        case = evolve(case, retry_cap=capped[0])
        notes.append(capped[1])
    extension = grace_extension(case, policy)
    if extension:
        notes.append(
            Explanation(
                f"policy.grace.extend.{case.customer.segment}",
                f"segment {case.customer.segment} gets {format_duration(extension)} longer "
                "grace: access steps and the case's end move that much later",
                (
                    ("segment", case.customer.segment or ""),
                    ("extension", format_duration(extension)),
                ),
            )
        )
    signal = _decline_signal(case, event, info.lane)
    case, risk_notes, effects = _screen(case, signal, policy, now, ctx)
    notes.extend(risk_notes)
    reason = _escalation_reason(case, policy)
    if reason is not None:
        notes.append(Explanation("policy.escalation", reason))
        if not case.escalated:  # a risk hold escalated it already, with its own reason
            case = evolve(case, escalated=True)
            effects = (Escalate(case.id, reason),)
    for level, rule, reason in access_due(case, policy, now):
        # A step due at once (`after: 0m`) is taken here, with the decision, as a due access
        # action would take it a moment later.
        notes.append(Explanation(rule, f"due: {reason}"))
        effects = (*effects, ChangeAccess(case.id, case.customer.id, case.subscription.id, level))
        case = evolve(case, access=level)
    decision = _updated(
        case, policy, now, ctx, notes, effects, ledger_entries=(entry,), signals=(signal,)
    )
    return evolve(decision, outcome="opened")


def _escalation_reason(case: RecoveryCase, policy: Policy) -> str | None:
    rules = policy.escalation
    if case.customer.segment and case.customer.segment in rules.segments:
        return f"segment {case.customer.segment} is handled by a human"
    threshold = rules.min_amount_minor.get(case.amount.currency)
    if threshold is not None and case.amount.amount_minor >= threshold:
        return f"amount {case.amount} is at or above {threshold} {case.amount.currency}"
    return None


def _on_payment_succeeded(
    case: RecoveryCase | None, event: PaymentSucceeded, policy: Policy, now: datetime, ctx: Context
) -> Decision:
    if case is None:
        return _ignored(
            None,
            "ingest.paid_without_case",
            f"invoice {event.invoice_id} is paid and has no case; remembered, so a late "
            "failure report for it opens none",
            invoice_paid=True,
        )
    if case.status in (CaseStatus.RECOVERED, CaseStatus.DISPUTED):
        return _ignored(case, "case.closed", f"the case is already {case.status.value}")
    attempts = tuple(
        evolve(a, status=AttemptStatus.SUCCEEDED, finished_at=event.occurred_at)
        if a.id == event.attempt_id and a.status is AttemptStatus.IN_FLIGHT
        else a
        for a in case.attempts
    )
    # By a charge (dunwell's or the provider's own retry) unless the customer acted: a new
    # card, an authentication, or a payment no retry made. Later cases read it (risk.chronic).
    charged = (
        event.attempt_id is not None
        or case.in_flight is not None
        or case.provider_retrying is not None
    )
    recovered_by = "retry" if charged and not case.customer_acted else "customer"
    notes = [
        Explanation(
            "case.recovered",
            f"payment succeeded ({event.id}), recovered by {recovered_by}; access restored",
        )
    ]
    if case.status is not CaseStatus.OPEN:
        notes.append(
            Explanation("case.late_payment", f"paid after the case ended {case.status.value}")
        )
    recovered = evolve(
        case,
        status=CaseStatus.RECOVERED,
        attempts=attempts,
        access=AccessLevel.FULL,
        closed_at=event.occurred_at,
        recovered_amount=event.amount or case.amount,
        recovered_by=case.recovered_by or recovered_by,
    )
    effects: tuple[Effect, ...] = ()
    if case.access is not AccessLevel.FULL:
        effects = (ChangeAccess(case.id, case.customer.id, case.subscription.id, AccessLevel.FULL),)
    return _updated(recovered, policy, now, ctx, notes, effects)


def _customer_fixed(case: RecoveryCase, at: datetime, why: str) -> RecoveryCase:
    # An advice code's wait stays: it is about the card, which a fix may not have changed.
    return evolve(case, customer_fixed_at=at, technical_retries=0, customer_acted=True)


def _on_payment_method_updated(
    case: RecoveryCase | None,
    event: PaymentMethodUpdated,
    policy: Policy,
    now: datetime,
    ctx: Context,
) -> Decision:
    if case is None or not case.is_open:
        return _ignored(case, "case.closed", "no open case to retry on the new payment method")
    if event.payment_method == case.payment_method:
        return _ignored(case, "case.same_method", "the payment method did not change")
    same_card = event.payment_method.credential_key == case.payment_method.credential_key
    fresh = evolve(
        case.decline,
        lane=Lane.RETRY_SOON,
        rule="payment_method.updated: a new method, not declined yet",
        retry_allowed=True,
    )
    case = evolve(
        _customer_fixed(case, event.occurred_at, "card"),
        payment_method=event.payment_method,
        not_before=case.not_before if same_card else None,
        decline=fresh,
    )
    note = Explanation(
        "case.payment_method_updated", "new payment method: lane retry_soon, retry at once"
    )
    signal = CustomerSignal(
        SignalKind.CARD_UPDATE,
        event.occurred_at,
        event.payment_method.credential_key,
        case.id,
        event.id,
    )
    case, risk_notes, effects = _screen(case, signal, policy, now, ctx)
    return _updated(case, policy, now, ctx, [note, *risk_notes], effects, signals=(signal,))


def _on_customer_authenticated(
    case: RecoveryCase | None,
    event: CustomerAuthenticated,
    policy: Policy,
    now: datetime,
    ctx: Context,
) -> Decision:
    if case is None or not case.is_open:
        return _ignored(case, "case.closed", "no open case waits on this authentication")
    if case.lane is not Lane.AUTHENTICATE:
        return _ignored(
            case, "case.not_authenticate", f"lane {case.lane.value} does not wait on authentication"
        )
    case = _customer_fixed(case, event.occurred_at, "authentication")
    note = Explanation("case.customer_authenticated", "the customer authenticated: retry at once")
    return _updated(case, policy, now, ctx, [note])


def _close(
    case: RecoveryCase | None,
    status: CaseStatus,
    rule: str,
    text: str,
    policy: Policy,
    now: datetime,
    ctx: Context,
    at: datetime,
) -> Decision:
    if case is None or not case.is_open:
        return _ignored(case, "case.closed", "no open case")
    return _updated(
        evolve(case, status=status, closed_at=at), policy, now, ctx, [Explanation(rule, text)]
    )


def _on_subscription_canceled(
    case: RecoveryCase | None,
    event: SubscriptionCanceled,
    policy: Policy,
    now: datetime,
    ctx: Context,
) -> Decision:
    text = f"subscription {event.subscription_id} canceled: recovery stops"
    return _close(
        case, CaseStatus.CANCELED, "case.canceled", text, policy, now, ctx, event.occurred_at
    )


def _on_dispute_opened(
    case: RecoveryCase | None, event: DisputeOpened, policy: Policy, now: datetime, ctx: Context
) -> Decision:
    if case is None or case.status is CaseStatus.DISPUTED:
        return _ignored(case, "case.no_case", "no case to mark disputed")
    blocked = case.blocked_credentials | {case.payment_method.credential_key}
    case = evolve(
        case, status=CaseStatus.DISPUTED, closed_at=event.occurred_at, blocked_credentials=blocked
    )
    text = "a dispute was opened: no further charge on this credential, recovery stops"
    signal = CustomerSignal(
        SignalKind.DISPUTE, event.occurred_at, case.payment_method.credential_key, case.id, event.id
    )
    return _updated(case, policy, now, ctx, [Explanation("case.disputed", text)], signals=(signal,))


def _on_action_due(
    case: RecoveryCase | None, event: ActionDue, policy: Policy, now: datetime, ctx: Context
) -> Decision:
    if case is None or not case.is_open:
        return _ignored(
            case, "case.closed", f"action {event.action_key} is moot: the case is closed"
        )
    action = case.planned(event.action_key)
    if action is None:
        return _ignored(case, "case.not_planned", f"action {event.action_key} is no longer planned")
    if action.due_at > now:
        # A stale or duplicate delivery of an action that was since planned for later.
        return _ignored(
            case,
            "case.not_due",
            f"action {event.action_key} is not due until {action.due_at.isoformat()}",
        )
    # The action is not taken out of the plan here: every branch below replans, and the plan
    # is rebuilt from the case's state, where this action is done (the attempt in flight, the
    # notice fired, the access level reached, the case ended). One copy of the case less.
    done = Explanation(action.rule, f"due: {action.reason}")
    if action.type is ActionType.RETRY:
        return _start_attempt(case, done, policy, now, ctx)
    if action.type is ActionType.NOTICE:
        channel, template, notes = action.param("channel"), action.param("template"), [done]
        unreachable = _unreachable(case)
        fallback = _fallback(policy, channel, unreachable) if channel in unreachable else None
        if fallback is not None:
            # The address bounced earlier in this case: no point sending there again.
            notes.append(
                Explanation(
                    "policy.channels.fallback",
                    f"{channel} could not reach the customer earlier in this case: {template} "
                    f"goes by {fallback}",
                    (("channel", channel), ("fallback", fallback)),
                )
            )
            channel = fallback
        notice = _notice(case, action.key, template, channel, now)
        return _updated(
            evolve(case, notices=(*case.notices, notice)),
            policy,
            now,
            ctx,
            notes,
            (_send(case, notice),),
        )
    if action.type is ActionType.ACCESS:
        level = AccessLevel(action.param("level"))
        change = ChangeAccess(case.id, case.customer.id, case.subscription.id, level)
        return _updated(evolve(case, access=level), policy, now, ctx, [done], (change,))
    status = CaseStatus(action.param("outcome"))
    ended = evolve(case, status=status, closed_at=now, access=AccessLevel.SUSPENDED)
    effects: tuple[Effect, ...] = ()
    if case.access is not AccessLevel.SUSPENDED:
        effects = (
            ChangeAccess(case.id, case.customer.id, case.subscription.id, AccessLevel.SUSPENDED),
        )
    return _updated(ended, policy, now, ctx, [done], effects)


def _start_attempt(
    case: RecoveryCase, done: Explanation, policy: Policy, now: datetime, ctx: Context
) -> Decision:
    # The ledger may have grown since the retry was planned: the guardrails judge again now.
    verdict = check_attempt(case, now, ctx.ledger, ctx.limits)
    if not verdict.allowed:
        refused = Explanation(verdict.rule, f"retry refused: {verdict.reason}", verdict.inputs)
        return _updated(case, policy, now, ctx, [done, refused])
    choice = choose_provider(case, ctx, now)
    if choice.provider is None:
        # Every provider that could charge is paused: nothing is sent, the replan waits.
        return _updated(case, policy, now, ctx, [done, choice.explanation])
    last = case.attempts[-1] if case.attempts else None
    if (
        last is not None
        and last.status is AttemptStatus.ERRORED
        and last.payment_method_token == case.payment_method.token
        and (last.sent is False or last.provider == choice.provider)
    ):
        # Its outcome is unknown: send the same attempt again, so the provider answers the
        # first request (idempotency key) instead of charging a second time. One never sent
        # (an open circuit) may go to another provider under its id: nobody saw it yet.
        attempt = evolve(
            last,
            status=AttemptStatus.IN_FLIGHT,
            started_at=now,
            finished_at=None,
            provider=choice.provider,
        )
        attempts = (*case.attempts[:-1], attempt)
    else:
        number = len(case.attempts) + 1
        attempt = Attempt(
            id=child_id("att", case.id, number),
            number=number,
            credential_key=case.payment_method.credential_key,
            provider=choice.provider,
            payment_method_token=case.payment_method.token,
            started_at=now,
            sent=False,
        )
        attempts = (*case.attempts, attempt)
    charge = Charge(
        case_id=case.id,
        attempt_id=attempt.id,
        idempotency_key=attempt.idempotency_key,
        amount=case.amount,
        provider=attempt.provider,
        payment_method=case.payment_method,
        customer_id=case.customer.id,
        invoice_id=case.invoice_id,
    )
    entry = LedgerEntry(attempt.credential_key, now, attempt.id)
    case = evolve(case, attempts=attempts, customer_fixed_at=None)
    started = Explanation(
        "attempt.start",
        f"attempt {attempt.number} charges {case.amount} (idempotency key {attempt.id})",
        verdict.inputs,
    )
    return _updated(
        case,
        policy,
        now,
        ctx,
        [done, choice.explanation, started],
        (charge,),
        ledger_entries=(entry,),
    )


def _on_attempt_errored(
    case: RecoveryCase | None, event: AttemptErrored, policy: Policy, now: datetime, ctx: Context
) -> Decision:
    attempt = None if case is None else case.in_flight
    if case is None or attempt is None or attempt.id != event.attempt_id:
        return _ignored(
            case, "case.attempt_settled", f"attempt {event.attempt_id} has no open outcome"
        )
    failed = evolve(
        attempt,
        status=AttemptStatus.ERRORED,
        finished_at=event.occurred_at,
        sent=attempt.sent or event.sent,
    )
    case = evolve(
        case,
        attempts=tuple(failed if a.id == attempt.id else a for a in case.attempts),
        technical_retries=case.technical_retries + 1,
    )
    note = Explanation(
        "attempt.provider_error",
        f"the provider failed ({event.message}); not a decline, not counted against network caps",
        (("provider", attempt.provider), ("sent", str(event.sent).lower())),
    )
    ctx = evolve(ctx, ledger=ctx.ledger.uncount(attempt.id))
    return _updated(case, policy, now, ctx, [note], ledger_uncount=(attempt.id,))


def _on_provider_retries_exhausted(
    case: RecoveryCase | None,
    event: ProviderRetriesExhausted,
    policy: Policy,
    now: datetime,
    ctx: Context,
) -> Decision:
    if case is None or not case.is_open:
        return _ignored(case, "case.closed", "no open case for this invoice")
    if not case.provider_retries_on or case.provider_retrying != event.provider:
        return _ignored(
            case,
            "provider.not_retrying",
            f"{event.provider} does not manage this case's retries: dunwell does already",
        )
    case = evolve(case, provider_gave_up_at=event.occurred_at)
    settings = ctx.routing.settings(event.provider)
    inputs = (
        ("provider", event.provider),
        ("takeover_after_provider", str(settings.takeover_after_provider).lower()),
    )
    if settings.takeover_after_provider:
        # Its own retries are in the ledger already (failures without an attempt id), so the
        # caps count them.
        note = Explanation(
            "provider.gave_up.takeover",
            f"{event.provider} stopped retrying: dunwell takes over, within the network caps",
            inputs,
        )
        return _updated(case, policy, now, ctx, [note])
    note = Explanation(
        "provider.gave_up.churned",
        f"{event.provider} stopped retrying and the tenant does not take over: the case ends "
        "churned",
        inputs,
    )
    ended = evolve(
        case, status=CaseStatus.CHURNED, closed_at=event.occurred_at, access=AccessLevel.SUSPENDED
    )
    effects: tuple[Effect, ...] = ()
    if case.access is not AccessLevel.SUSPENDED:
        effects = (
            ChangeAccess(case.id, case.customer.id, case.subscription.id, AccessLevel.SUSPENDED),
        )
    return _updated(ended, policy, now, ctx, [note], effects)


def _on_notice_delivered(
    case: RecoveryCase | None, event: NoticeDelivered, policy: Policy, now: datetime, ctx: Context
) -> Decision:
    if case is None:
        return _ignored(None, "case.no_case", "no case for this notice")
    status = "sent" if event.ok else "undeliverable" if event.undeliverable else "failed"
    notices = tuple(
        evolve(n, status=status, delivered_at=event.occurred_at) if n.id == event.notice_id else n
        for n in case.notices
    )
    said = "sent" if event.ok else f"{status}: {event.detail or ''}"
    text = f"notice {event.notice_id} {said}"
    notes = [Explanation("notice.delivered", text)]
    case = evolve(case, notices=notices)
    sent = next((n for n in notices if n.id == event.notice_id), None)
    fallback = None
    if sent is not None and event.undeliverable and case.is_open:
        if not sent.key.endswith(FALLBACK_KEY):  # one hop: a fallback never falls back
            fallback = _fallback(policy, sent.channel, _unreachable(case))
    if sent is None or fallback is None:
        return Decision("updated", case, tuple(notes))
    # The same message by the other channel, now: the checkpoint it serves is still due.
    resent = _notice(case, f"{sent.key}{FALLBACK_KEY}", sent.template, fallback, now)
    notes.append(
        Explanation(
            "policy.channels.fallback",
            f"{sent.channel} cannot reach the customer ({event.detail or 'undeliverable'}): "
            f"{sent.template} goes by {fallback} instead",
            (("channel", sent.channel), ("fallback", fallback), ("template", sent.template)),
        )
    )
    return Decision(
        "updated",
        evolve(case, notices=(*case.notices, resent)),
        tuple(notes),
        (_send(case, resent),),
    )


FALLBACK_KEY = ":fallback"  # marks a notice resent by the fallback channel: one hop only


def _fallback(policy: Policy, channel: str, unreachable: frozenset[str]) -> str | None:
    """The policy's fallback for `channel`, unless it too bounced in this case already."""
    fallback = policy.fallback.get(channel)
    return None if fallback in unreachable else fallback


def _unreachable(case: RecoveryCase) -> frozenset[str]:
    """Channels that told this case the customer's address cannot receive (a hard bounce)."""
    return frozenset(n.channel for n in case.notices if n.status == "undeliverable")


def _notice(case: RecoveryCase, key: str, template: str, channel: str, now: datetime) -> Notice:
    return Notice(
        id=child_id("ntc", case.id, len(case.notices) + 1),
        key=key,
        template=template,
        channel=channel,
        created_at=now,
    )


def _send(case: RecoveryCase, notice: Notice) -> SendNotice:
    return SendNotice(
        case.id,
        notice.id,
        notice.template,
        notice.channel,
        case.customer,
        case.amount,
        case.lane.value,
    )


_HANDLERS: dict[type, Callable[..., Decision]] = {
    PaymentFailed: _on_payment_failed,
    PaymentSucceeded: _on_payment_succeeded,
    PaymentMethodUpdated: _on_payment_method_updated,
    CustomerAuthenticated: _on_customer_authenticated,
    SubscriptionCanceled: _on_subscription_canceled,
    DisputeOpened: _on_dispute_opened,
    ActionDue: _on_action_due,
    AttemptErrored: _on_attempt_errored,
    NoticeDelivered: _on_notice_delivered,
    ProviderRetriesExhausted: _on_provider_retries_exhausted,
}
