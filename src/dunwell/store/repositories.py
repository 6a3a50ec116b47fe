"""Repositories: the only code that reads and writes rows; they speak domain values."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Table, and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from dunwell.domain.case import PlannedAction, RecoveryCase
from dunwell.domain.history import CustomerSignal, PastCase, SignalKind, past_outcome
from dunwell.domain.ledger import LEDGER_HORIZON, AttemptLedger, LedgerEntry
from dunwell.domain.records import direct_init
from dunwell.store.codec import case_from_dict, case_to_dict
from dunwell.store.tables import (
    ActionRow,
    AuditEntry,
    CaseRow,
    CustomerSignalRow,
    DeadLetter,
    EventRow,
    LedgerRow,
    NoticeSend,
    PaidInvoice,
    PolicyAssignment,
    Tenant,
)
from dunwell.webhooks.store import WebhookEndpoint

# The ingest hot path speaks SQLAlchemy Core to these tables: no identity map, no unit-of-work
# flush planning, and every multi-row write is one executemany (one statement on the wire).
_cases = cast(Table, CaseRow.__table__)
_actions = cast(Table, ActionRow.__table__)
_audit = cast(Table, AuditEntry.__table__)
_ledger = cast(Table, LedgerRow.__table__)
_events = cast(Table, EventRow.__table__)
_paid = cast(Table, PaidInvoice.__table__)
_tenants = cast(Table, Tenant.__table__)
_assignments = cast(Table, PolicyAssignment.__table__)
_signals = cast(Table, CustomerSignalRow.__table__)


def _param(name: str) -> Any:
    return bindparam(name)


# Statements of the hot path, built once: building a Core statement costs more than running
# it on SQLite, and a prebuilt one also keeps its compiled-cache key.
_CASE_COLUMNS = select(_cases.c.id, _cases.c.state, _cases.c.version)
_CASE_BY_ID = _CASE_COLUMNS.where(
    _cases.c.id == _param("case_id"), _cases.c.tenant_id == _param("tenant_id")
)
_CASE_BY_INVOICE = _CASE_COLUMNS.where(
    _cases.c.tenant_id == _param("tenant_id"), _cases.c.invoice_id == _param("invoice_id")
)
_CASE_BY_ID_LOCKED = _CASE_BY_ID.with_for_update()
_CASE_BY_INVOICE_LOCKED = _CASE_BY_INVOICE.with_for_update()
_INSERT_CASE = insert(_cases)
_UPDATE_CASE = update(_cases).where(
    _cases.c.id == _param("b_id"), _cases.c.version == _param("b_version")
)
_SCHEDULED = select(
    _actions.c.id,
    _actions.c.key,
    _actions.c.type,
    _actions.c.due_at,
    _actions.c.rule,
    _actions.c.reason,
).where(_actions.c.case_id == _param("case_id"), _actions.c.status == "scheduled")
_IS_SCHEDULED = (_actions.c.id == _param("b_id")) & (_actions.c.status == "scheduled")
_CANCEL_ACTIONS = update(_actions).where(_IS_SCHEDULED).values(status="canceled")
_MOVE_ACTIONS = update(_actions).where(_IS_SCHEDULED)
_INSERT_ACTIONS = insert(_actions)
_ACTION_STATUS = select(_actions.c.status).where(_actions.c.id == _param("action_id"))
_SETTLE = update(_actions).where(_actions.c.id == _param("b_id"))
_SETTLE_IF = _SETTLE.where(_actions.c.status == _param("b_was"))
_LEDGER = (
    select(
        _ledger.c.credential_key,
        _ledger.c.attempted_at,
        _ledger.c.attempt_id,
        _ledger.c.counted,
        _ledger.c.never_retry,
        _ledger.c.wait_until,
    )
    .where(
        _ledger.c.tenant_id == _param("tenant_id"),
        _ledger.c.credential_key.in_(bindparam("keys", expanding=True)),
        # Never-retry blocks are kept whatever their age.
        (_ledger.c.attempted_at > _param("since")) | _ledger.c.never_retry.is_(True),
    )
    .order_by(_ledger.c.credential_key, _ledger.c.attempted_at, _ledger.c.id)
)
_INSERT_LEDGER = insert(_ledger)
_INSERT_AUDIT = insert(_audit)
_PAID_AT = select(_paid.c.paid_at).where(
    _paid.c.tenant_id == _param("tenant_id"), _paid.c.invoice_id == _param("invoice_id")
)
_INSERT_PAID = insert(_paid)
_FIND_EVENT = select(_events.c.outcome, _events.c.case_ids).where(
    _events.c.tenant_id == _param("tenant_id"), _events.c.event_id == _param("event_id")
)
_INSERT_EVENT = insert(_events)
# The customer's history for the risk rules: both read through (tenant, customer[, time])
# indexes, newest first, and bounded (a customer's recent past, not a full scan).
HISTORY_LIMIT = 200  # rows of a customer's history a decision reads at most
_SIGNALS = (
    select(
        _signals.c.kind,
        _signals.c.at,
        _signals.c.credential_key,
        _signals.c.case_id,
        _signals.c.event_id,
    )
    .where(
        _signals.c.tenant_id == _param("tenant_id"),
        _signals.c.customer_id == _param("customer_id"),
        _signals.c.at > _param("since"),
    )
    .order_by(_signals.c.at.desc())
    .limit(HISTORY_LIMIT)
)
_PAST_CASES = (
    select(_cases.c.id, _cases.c.opened_at, _cases.c.status, _cases.c.recovered_by)
    .where(
        _cases.c.tenant_id == _param("tenant_id"),
        _cases.c.customer_id == _param("customer_id"),
        _cases.c.opened_at > _param("since"),
    )
    .order_by(_cases.c.opened_at.desc())
    .limit(HISTORY_LIMIT)
)
_INSERT_SIGNALS = insert(_signals)


def _execute(session: Session, statement: Any, params: Any = None) -> Any:
    # Straight to the transaction's connection: Core statements need none of the ORM's
    # per-execution work (these tables are never touched through the ORM in the same unit).
    return session.connection().execute(statement, params)


class CaseRepository:
    def __init__(self, session: Session) -> None:
        self.session = session
        # The version each case was read at in this unit of work: a save updates only a case
        # read here, and only if nobody changed it since.
        self._versions: dict[str, int] = {}
        self._opened: set[str] = set()

    def get(self, tenant_id: str, case_id: str, *, lock: bool = False) -> RecoveryCase | None:
        query = _CASE_BY_ID_LOCKED if lock else _CASE_BY_ID
        found = self._select(query, {"case_id": case_id, "tenant_id": tenant_id})
        return found[0] if found else None

    def by_invoice(
        self, tenant_id: str, invoice_id: str, *, lock: bool = False
    ) -> RecoveryCase | None:
        # FOR UPDATE on PostgreSQL: writers of one case queue up instead of failing on the
        # version check (SQLite's BEGIN IMMEDIATE already serializes every writer).
        query = _CASE_BY_INVOICE_LOCKED if lock else _CASE_BY_INVOICE
        found = self._select(query, {"tenant_id": tenant_id, "invoice_id": invoice_id})
        return found[0] if found else None

    def open_by(
        self,
        tenant_id: str,
        *,
        customer_id: str | None = None,
        subscription_id: str | None = None,
        lock: bool = False,
    ) -> list[RecoveryCase]:
        query = _CASE_COLUMNS.where(_cases.c.tenant_id == tenant_id, _cases.c.status == "open")
        if customer_id is not None:
            query = query.where(_cases.c.customer_id == customer_id)
        if subscription_id is not None:
            query = query.where(_cases.c.subscription_id == subscription_id)
        query = query.order_by(_cases.c.opened_at, _cases.c.id)
        return self._select(query.with_for_update() if lock else query)

    def _select(self, query: Any, params: dict[str, Any] | None = None) -> list[RecoveryCase]:
        cases = []
        found = _execute(self.session, query, params)
        for case_id, state, version in found:
            self._versions[case_id] = version
            cases.append(case_from_dict(state))
        return cases

    def save(self, case: RecoveryCase, now: datetime) -> None:
        """Insert or update; the version column makes a concurrent writer fail, not overwrite."""
        # Only a case this unit of work read is updated; any other save is an insert, so a
        # case opened concurrently elsewhere fails the insert instead of being overwritten.
        version = self._versions.get(case.id)
        next_action = case.next_action
        columns: dict[str, Any] = dict(
            tenant_id=case.tenant_id,
            invoice_id=case.invoice_id,
            customer_id=case.customer.id,
            subscription_id=case.subscription.id,
            status=case.status.value,
            stage=case.stage.value if case.stage else None,
            lane=case.lane.value,
            policy_name=case.policy_name,
            amount_minor=case.amount.amount_minor,
            currency=case.amount.currency,
            opened_at=case.opened_at,
            closed_at=case.closed_at,
            next_action_at=next_action.due_at if next_action else None,
            recovered_by=case.recovered_by,
            state=case_to_dict(case),
            updated_at=now,
        )
        if version is None:
            _execute(self.session, _INSERT_CASE, {"id": case.id, "version": 1, **columns})
            self._versions[case.id] = 1
            self._opened.add(case.id)
            return
        result = _execute(
            self.session,
            _UPDATE_CASE,
            {"b_id": case.id, "b_version": version, "version": version + 1, **columns},
        )
        if result.rowcount != 1:
            raise StaleDataError(f"case {case.id} changed since version {version}")
        self._versions[case.id] = version + 1

    def opened_here(self, case_id: str) -> bool:
        """Whether this unit of work inserted the case (so it has no action rows yet)."""
        return case_id in self._opened

    def list(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        stage: str | None = None,
        lane: str | None = None,
        customer_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RecoveryCase]:
        query = select(CaseRow).where(CaseRow.tenant_id == tenant_id)
        for column, value in (
            (CaseRow.status, status),
            (CaseRow.stage, stage),
            (CaseRow.lane, lane),
            (CaseRow.customer_id, customer_id),
        ):
            if value is not None:
                query = query.where(column == value)
        query = query.order_by(CaseRow.opened_at.desc(), CaseRow.id).limit(limit).offset(offset)
        return [case_from_dict(row.state) for row in self.session.scalars(query)]

    def opened_between(
        self, tenant_id: str, since: datetime, until: datetime, *, batch: int = 500
    ) -> Iterator[RecoveryCase]:
        """Every case of the tenant opened in [since, until), oldest first, read in batches
        (keyset on opened_at, id) so a year of cases never sits in memory at once."""
        after: tuple[datetime, str] | None = None
        while True:
            query = select(CaseRow).where(
                CaseRow.tenant_id == tenant_id,
                CaseRow.opened_at >= since,
                CaseRow.opened_at < until,
            )
            if after is not None:
                query = query.where(
                    (CaseRow.opened_at > after[0])
                    | ((CaseRow.opened_at == after[0]) & (CaseRow.id > after[1]))
                )
            rows = self.session.scalars(
                query.order_by(CaseRow.opened_at, CaseRow.id).limit(batch)
            ).all()
            for row in rows:
                yield case_from_dict(row.state)
            if len(rows) < batch:
                return
            after = (rows[-1].opened_at, rows[-1].id)


@dataclass(frozen=True, slots=True)
class ScheduledRow:
    """A scheduled action row as sync sees it."""

    id: int
    key: str
    type: str
    due_at: datetime
    rule: str
    reason: str


class Scheduled(Protocol):
    """A scheduled row as a plan diff reads it: a `ScheduledRow`, or the in-memory store's
    own row record (which has these attributes), without a copy."""

    @property
    def id(self) -> int: ...
    @property
    def key(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def due_at(self) -> datetime: ...
    @property
    def rule(self) -> str: ...
    @property
    def reason(self) -> str: ...


@direct_init
@dataclass(frozen=True, slots=True)
class PlanDiff:
    """What it takes to make a case's scheduled rows match its plan (every store applies it)."""

    canceled: list[Scheduled]
    moved: list[tuple[Scheduled, PlannedAction]]
    added: list[PlannedAction]
    # (scheduled | rescheduled | canceled, action), in this order of discovery, for the audit.
    changes: list[tuple[str, PlannedAction | Scheduled]]


def diff_plan(rows: Mapping[str, Scheduled], plan: Iterable[PlannedAction]) -> PlanDiff:
    """Rows are matched to the plan by key: new keys are added, changed ones moved, missing
    ones canceled."""
    wanted = {p.key: p for p in plan}
    diff = PlanDiff([], [], [], [])
    for key, row in rows.items():
        if key not in wanted:
            diff.canceled.append(row)
            diff.changes.append(("canceled", row))
    for key, planned in wanted.items():
        found = rows.get(key)
        if found is None:
            diff.added.append(planned)
            diff.changes.append(("scheduled", planned))
        elif (found.due_at, found.reason) != (planned.due_at, planned.reason):
            diff.moved.append((found, planned))
            diff.changes.append(("rescheduled", planned))
    return diff


class ActionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def sync(
        self, case: RecoveryCase, now: datetime, *, opened_here: bool = False
    ) -> list[tuple[str, PlannedAction | Scheduled]]:
        """Make the scheduled rows of a case match its plan, in at most three statements.

        `opened_here`: the case was inserted in this transaction, so it has no rows to read.
        Returns what changed, as (scheduled | rescheduled | canceled, action) for the audit.
        """
        rows = {} if opened_here else {row.key: row for row in self.scheduled(case.id)}
        diff = diff_plan(rows, case.plan)
        canceled = [{"b_id": row.id, "updated_at": now} for row in diff.canceled]
        moved = [
            {
                "b_id": row.id,
                "due_at": planned.due_at,
                "rule": planned.rule,
                "reason": planned.reason,
                "updated_at": now,
            }
            for row, planned in diff.moved
        ]
        added = [self._row(case, planned, now) for planned in diff.added]
        if canceled:
            _execute(self.session, _CANCEL_ACTIONS, canceled)
        if moved:
            _execute(self.session, _MOVE_ACTIONS, moved)
        if added:
            _execute(self.session, _INSERT_ACTIONS, added)
        return diff.changes

    def scheduled(self, case_id: str) -> list[ScheduledRow]:
        found = _execute(self.session, _SCHEDULED, {"case_id": case_id})
        return [ScheduledRow(*row) for row in found]

    def status(self, action_id: int) -> str | None:
        found = _execute(self.session, _ACTION_STATUS, {"action_id": action_id})
        return cast(str | None, found.scalar_one_or_none())

    def settle(
        self,
        action_id: int,
        status: str,
        now: datetime,
        *,
        was: str | None,
        effects: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Set one action row's status (only if it is `was`, unless None); False if no row
        was changed."""
        values: dict[str, Any] = {"b_id": action_id, "status": status, "updated_at": now}
        if effects is not None:
            values["effects"] = effects
        if was is not None:
            values["b_was"] = was
        result = _execute(self.session, _SETTLE if was is None else _SETTLE_IF, values)
        return bool(result.rowcount)

    @staticmethod
    def _row(case: RecoveryCase, planned: PlannedAction, now: datetime) -> dict[str, Any]:
        return dict(
            tenant_id=case.tenant_id,
            case_id=case.id,
            key=planned.key,
            type=planned.type.value,
            due_at=planned.due_at,
            status="scheduled",
            rule=planned.rule,
            reason=planned.reason,
            params=dict(planned.params),
            effects=[],
            created_at=now,
            updated_at=now,
        )

    def add_effects(
        self, tenant_id: str, case_id: str, key: str, effects: list[dict[str, Any]], now: datetime
    ) -> None:
        """Effects decided outside a due action (an escalation, a reinstatement): an outbox row."""
        _execute(
            self.session,
            _INSERT_ACTIONS,
            dict(
                tenant_id=tenant_id,
                case_id=case_id,
                key=key,
                type="effect",
                due_at=now,
                status="running",
                rule="outbox",
                reason="carry out the decision's effects",
                params={},
                effects=effects,
                created_at=now,
                updated_at=now,
            ),
        )

    def due(self, now: datetime, limit: int) -> Sequence[ActionRow]:
        return self.session.scalars(
            select(ActionRow)
            .where(ActionRow.status == "scheduled", ActionRow.due_at <= now)
            .order_by(ActionRow.due_at, ActionRow.id)
            .limit(limit)
        ).all()

    def running(self, limit: int) -> Sequence[ActionRow]:
        return self.session.scalars(
            select(ActionRow)
            .where(ActionRow.status == "running")
            .order_by(ActionRow.id)
            .limit(limit)
        ).all()

    def get(self, action_id: int) -> ActionRow | None:
        return self.session.get(ActionRow, action_id)

    def by_ids(self, action_ids: Sequence[int]) -> Sequence[ActionRow]:
        return self.session.scalars(
            select(ActionRow).where(ActionRow.id.in_(action_ids)).order_by(ActionRow.id)
        ).all()

    def undispatched(self, now: datetime, limit: int) -> Sequence[tuple[ActionRow, str | None]]:
        """Due rows no durable workflow carries yet, with the provider of their case.

        `running` rows without a workflow are effects an external event asked for (or rows
        the embedded runner left behind): they are carried out too.
        """
        provider = CaseRow.state["decline"]["provider"].as_string()
        query = (
            select(ActionRow, provider)
            .join(CaseRow, CaseRow.id == ActionRow.case_id)
            .where(
                ActionRow.workflow_id.is_(None),
                or_(
                    and_(ActionRow.status == "scheduled", ActionRow.due_at <= now),
                    ActionRow.status == "running",
                ),
            )
            .order_by(ActionRow.due_at, ActionRow.id)
            .limit(limit)
        )
        return [(row, name) for row, name in self.session.execute(query)]

    def stale_dispatches(self, before: datetime, limit: int) -> dict[str, list[int]]:
        """Workflows handed rows before `before` that still have work: {workflow id: row ids}."""
        query = (
            select(ActionRow.workflow_id, ActionRow.id)
            .where(
                ActionRow.workflow_id.is_not(None),
                ActionRow.status.in_(("scheduled", "running")),
                ActionRow.dispatched_at < before,
            )
            .order_by(ActionRow.id)
            .limit(limit)
        )
        found: dict[str, list[int]] = {}
        for workflow_id, action_id in self.session.execute(query):
            assert workflow_id is not None
            found.setdefault(workflow_id, []).append(action_id)
        return found

    def claim_notice_send(
        self, tenant_id: str, case_id: str, notice_id: str, now: datetime
    ) -> bool:
        """Record that a notice goes to its channel now; False if it went (or began to) before."""
        if self.session.get(NoticeSend, notice_id) is not None:
            return False
        self.session.add(
            NoticeSend(notice_id=notice_id, tenant_id=tenant_id, case_id=case_id, started_at=now)
        )
        self.session.flush()
        return True

    def dispatch(self, action_ids: Sequence[int], workflow_id: str | None, now: datetime) -> None:
        """Record (or, with None, clear) the workflow that carries these rows."""
        self.session.execute(
            update(ActionRow)
            .where(ActionRow.id.in_(action_ids))
            .values(workflow_id=workflow_id, dispatched_at=now if workflow_id else None)
        )

    def next_due_at(self) -> datetime | None:
        return self.session.scalars(
            select(ActionRow.due_at)
            .where(ActionRow.status == "scheduled")
            .order_by(ActionRow.due_at)
            .limit(1)
        ).first()

    def for_case(self, case_id: str) -> Sequence[ActionRow]:
        return self.session.scalars(
            select(ActionRow).where(ActionRow.case_id == case_id).order_by(ActionRow.id)
        ).all()


class LedgerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def load(self, tenant_id: str, credential_keys: set[str], now: datetime) -> AttemptLedger:
        if not credential_keys:
            return AttemptLedger()
        # A little more than the 30-day window: entries dated up to a day ahead (clock skew)
        # and the window's edge both stay visible.
        since = now - LEDGER_HORIZON - timedelta(days=1)
        rows = _execute(
            self.session,
            _LEDGER,
            {"tenant_id": tenant_id, "keys": sorted(credential_keys), "since": since},
        )
        return AttemptLedger(tuple(LedgerEntry(*row) for row in rows))

    def add(self, tenant_id: str, case_id: str, entry: LedgerEntry) -> None:
        self.add_many(tenant_id, case_id, [entry])

    def add_many(self, tenant_id: str, case_id: str, entries: Iterable[LedgerEntry]) -> None:
        rows = [
            dict(
                tenant_id=tenant_id,
                credential_key=entry.credential_key,
                attempted_at=entry.attempted_at,
                attempt_id=entry.attempt_id,
                case_id=case_id,
                counted=entry.counted,
                never_retry=entry.never_retry,
                wait_until=entry.wait_until,
            )
            for entry in entries
        ]
        if rows:
            _execute(self.session, _INSERT_LEDGER, rows)

    def uncount(self, attempt_id: str) -> None:
        _execute(
            self.session,
            update(_ledger).where(_ledger.c.attempt_id == attempt_id).values(counted=False),
        )


class HistoryRepository:
    """A customer's earlier cases and payment signals (domain/history.py)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def past_cases(self, tenant_id: str, customer_id: str, since: datetime) -> list[PastCase]:
        rows = _execute(
            self.session,
            _PAST_CASES,
            {"tenant_id": tenant_id, "customer_id": customer_id, "since": since},
        )
        return [
            PastCase(case_id, opened_at, past_outcome(status, recovered_by))
            for case_id, opened_at, status, recovered_by in rows
        ]

    def signals(self, tenant_id: str, customer_id: str, since: datetime) -> list[CustomerSignal]:
        rows = _execute(
            self.session,
            _SIGNALS,
            {"tenant_id": tenant_id, "customer_id": customer_id, "since": since},
        )
        return [
            CustomerSignal(SignalKind(kind), at, credential_key, case_id, event_id)
            for kind, at, credential_key, case_id, event_id in rows
        ]

    def add_signals(
        self, tenant_id: str, customer_id: str, signals: Iterable[CustomerSignal]
    ) -> None:
        rows = [
            dict(
                tenant_id=tenant_id,
                customer_id=customer_id,
                kind=s.kind.value,
                at=s.at,
                credential_key=s.credential_key,
                case_id=s.case_id,
                event_id=s.event_id,
            )
            for s in signals
        ]
        if rows:
            _execute(self.session, _INSERT_SIGNALS, rows)


class AuditRepository:
    """Entries are collected by `add` and written as one executemany by `flush`, which the
    unit of work's commit and a read of the trail call: an event writes about ten."""

    keeps = True  # every entry (the in-memory store may keep none: callers skip building them)

    def __init__(self, session: Session) -> None:
        self.session = session
        self._pending: list[dict[str, Any]] = []

    def add(
        self,
        tenant_id: str,
        case_id: str | None,
        at: datetime,
        kind: str,
        rule: str,
        text: str,
        data: dict[str, Any],
        event_id: str | None = None,
    ) -> None:
        self._pending.append(
            dict(
                tenant_id=tenant_id,
                case_id=case_id,
                at=at,
                kind=kind,
                event_id=event_id,
                rule=rule,
                text=text,
                data=data,
            )
        )

    def flush(self) -> None:
        if self._pending:
            rows, self._pending = self._pending, []
            _execute(self.session, _INSERT_AUDIT, rows)

    def for_case(self, case_id: str) -> Sequence[AuditEntry]:
        self.flush()
        return self.session.scalars(
            select(AuditEntry).where(AuditEntry.case_id == case_id).order_by(AuditEntry.id)
        ).all()


class InvoiceRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def paid_at(self, tenant_id: str, invoice_id: str) -> datetime | None:
        found = _execute(self.session, _PAID_AT, {"tenant_id": tenant_id, "invoice_id": invoice_id})
        return cast(datetime | None, found.scalar_one_or_none())

    def mark_paid(self, tenant_id: str, invoice_id: str, at: datetime, event_id: str) -> None:
        if self.paid_at(tenant_id, invoice_id) is None:
            _execute(
                self.session,
                _INSERT_PAID,
                dict(tenant_id=tenant_id, invoice_id=invoice_id, paid_at=at, event_id=event_id),
            )


@direct_init
@dataclass(frozen=True, slots=True)
class EventRecord:
    outcome: str
    case_ids: list[str]


class EventRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def find(self, tenant_id: str, event_id: str) -> EventRecord | None:
        row = _execute(
            self.session, _FIND_EVENT, {"tenant_id": tenant_id, "event_id": event_id}
        ).one_or_none()
        return None if row is None else EventRecord(row.outcome, list(row.case_ids))

    def add(
        self,
        tenant_id: str,
        event_id: str,
        type: str,
        occurred_at: datetime,
        received_at: datetime,
        payload: dict[str, Any],
        case_ids: list[str],
        outcome: str,
    ) -> None:
        """Record an accepted event; the unique key refuses a second one with the same id."""
        _execute(
            self.session,
            _INSERT_EVENT,
            dict(
                tenant_id=tenant_id,
                event_id=event_id,
                type=type,
                occurred_at=occurred_at,
                received_at=received_at,
                payload=payload,
                case_ids=case_ids,
                outcome=outcome,
            ),
        )

    def failures_of_cases(self, tenant_id: str, since: datetime) -> dict[str, dict[str, Any]]:
        """The first `payment.failed` payload of each case touched since `since`, by case id:
        what the case opened with (its first decline code and card), which the case's own
        state no longer holds once later declines replaced it."""
        query = (
            select(EventRow.payload, EventRow.case_ids)
            .where(
                EventRow.tenant_id == tenant_id,
                EventRow.type == "payment.failed",
                EventRow.occurred_at >= since,
            )
            .order_by(EventRow.occurred_at, EventRow.id)
        )
        first: dict[str, dict[str, Any]] = {}
        for payload, case_ids in self.session.execute(query):
            for case_id in case_ids or ():
                first.setdefault(str(case_id), payload)
        return first


class TenantRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_key_hash(self, key_hash: str) -> Tenant | None:
        return self.session.scalars(
            select(Tenant).where(Tenant.api_key_hash == key_hash)
        ).one_or_none()

    def get(self, tenant_id: str) -> Tenant | None:
        return self.session.get(Tenant, tenant_id)

    def policy_name(self, tenant_id: str, storefront: str | None) -> str | None:
        rows = self.policy_assignments(tenant_id)
        return rows.get(storefront or "", rows.get(""))

    def policy_assignments(self, tenant_id: str) -> dict[str, str]:
        """storefront -> policy name; storefront '' is the tenant's default."""
        query = select(_assignments.c.storefront, _assignments.c.policy_name).where(
            _assignments.c.tenant_id == tenant_id
        )
        return {storefront: name for storefront, name in self.session.execute(query)}

    def id_by_key_hash(self, key_hash: str) -> str | None:
        return self.session.execute(
            select(_tenants.c.id).where(_tenants.c.api_key_hash == key_hash)
        ).scalar_one_or_none()

    def visa_rule(self, tenant_id: str) -> str | None:
        return self.session.execute(
            select(_tenants.c.visa_rule).where(_tenants.c.id == tenant_id)
        ).scalar_one_or_none()

    def retrying_providers(self, tenant_id: str) -> frozenset[str]:
        """Providers whose webhook endpoints say they retry by themselves."""
        rows = self.session.scalars(
            select(WebhookEndpoint.provider).where(
                WebhookEndpoint.tenant_id == tenant_id,
                WebhookEndpoint.provider_retries_enabled.is_(True),
            )
        )
        return frozenset(rows)


class DeadLetterRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: DeadLetter) -> None:
        self.session.add(row)

    def get(self, dead_letter_id: str) -> DeadLetter | None:
        return self.session.get(DeadLetter, dead_letter_id)

    def list(
        self, tenant_id: str | None, status: str | None = None, limit: int = 100
    ) -> Sequence[DeadLetter]:
        query = select(DeadLetter)
        if tenant_id is not None:
            query = query.where(DeadLetter.tenant_id == tenant_id)
        if status is not None:
            query = query.where(DeadLetter.status == status)
        return self.session.scalars(
            query.order_by(DeadLetter.received_at.desc()).limit(limit)
        ).all()
