"""The in-memory store: the repositories ingest and the action runner use, on dicts.

The simulator's store (`dunwell simulate --store memory`): the same engine (ingest, `decide`,
the runner) without SQL, so a run costs what the engine's decisions cost. It answers every
read exactly as the SQLAlchemy repositories do, orders included (a test runs both stores on
the same worlds and compares the JSON byte for byte). One process, one thread, no files:
nothing concurrent can happen, so there are no locks; a unit of work that ends without
`commit` still undoes its writes, as a rolled-back transaction would.

Not kept: the audit trail's entries (the simulator never reads them; `keep_audit=True` keeps
them in a list) and whatever only the API, the durable worker or the CLI read (dead letters,
webhook endpoints, workflow ids).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from types import TracebackType
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from dunwell.domain.case import CaseStatus, PlannedAction, RecoveryCase
from dunwell.domain.history import CustomerSignal, PastCase, past_outcome
from dunwell.domain.ledger import LEDGER_HORIZON, AttemptLedger, LedgerEntry
from dunwell.domain.records import evolve
from dunwell.store.repositories import (
    HISTORY_LIMIT,
    EventRecord,
    Scheduled,
    ScheduledRow,
    diff_plan,
)


def _utc(value: datetime) -> datetime:
    # What a UtcDateTime column gives back: the same instant, in UTC.
    return value.astimezone(UTC)


@dataclass(slots=True)
class ActionRecord:
    """An action row: the attributes of `tables.ActionRow` the runner reads."""

    id: int
    tenant_id: str
    case_id: str
    key: str
    type: str
    due_at: datetime
    status: str
    rule: str
    reason: str
    params: dict[str, Any]
    effects: list[Any]
    created_at: datetime
    updated_at: datetime
    queued: int = 0  # the token of this row's entry in the due queue (other ones are stale)


@dataclass(slots=True)
class _LedgerRecord:
    id: int
    entry: LedgerEntry


@dataclass
class MemoryStore:
    keep_audit: bool = False
    # id -> (case, version): the frozen case itself where SQL keeps its JSON (the same values)
    cases: dict[str, tuple[RecoveryCase, int]] = field(default_factory=dict)
    case_by_invoice: dict[tuple[str, str], str] = field(default_factory=dict)
    cases_by_customer: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    cases_by_subscription: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    actions: dict[int, ActionRecord] = field(default_factory=dict)
    scheduled_by_case: dict[str, dict[str, ActionRecord]] = field(default_factory=dict)
    # (due_at, id, queued) of scheduled rows: a row moved or settled leaves a stale entry,
    # skipped when it comes up (its `queued` no longer matches, or it is not scheduled).
    due_queue: list[tuple[datetime, int, int]] = field(default_factory=list)
    queue_tokens: int = 0  # never reused, so an entry of the past can never look current
    running: set[int] = field(default_factory=set)
    ledger: dict[tuple[str, str], list[_LedgerRecord]] = field(default_factory=dict)
    ledger_by_attempt: dict[str, list[_LedgerRecord]] = field(default_factory=dict)
    paid: dict[tuple[str, str], datetime] = field(default_factory=dict)
    events: dict[tuple[str, str], EventRecord] = field(default_factory=dict)
    notice_sends: set[str] = field(default_factory=set)
    tenants: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    # (tenant, customer) -> payment signals in the order they were written (risk rules)
    signals: dict[tuple[str, str], list[CustomerSignal]] = field(default_factory=dict)
    last_id: dict[str, int] = field(default_factory=dict)  # table -> last id handed out
    # Units of work that have ended, handed out again with their repositories: a simulation
    # opens a few units per event, and building the unit and its repositories each time was
    # about 4% of a run. A unit is only reused after its `with` block ends (`__exit__`).
    spare_units: list[MemoryUnitOfWork] = field(default_factory=list, repr=False, compare=False)

    def unit(self) -> MemoryUnitOfWork:
        spare = self.spare_units
        return spare.pop() if spare else MemoryUnitOfWork(self)

    def add_tenant(self, tenant_id: str, visa_rule: str, policies: dict[str, str]) -> None:
        """A tenant with its visa rule and policy assignments (storefront '' the default)."""
        self.tenants[tenant_id] = (visa_rule, dict(policies))

    def next_id(self, table: str, undo: list[Callable[[], None]]) -> int:
        last = self.last_id.get(table, 0)
        self.last_id[table] = last + 1
        undo.append(lambda: self.last_id.__setitem__(table, last))
        return last + 1


class MemoryUnitOfWork:
    """A unit of work: writes apply at once and are undone unless `commit` is called."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.undo: list[Callable[[], None]] = []

    # The repositories, built on first use (`_OnFirstUse`, set below): most units touch one
    # or two kinds of rows, and the simulator opens tens of units per case.
    cases: MemoryCases
    actions: MemoryActions
    ledger: MemoryLedger
    audit: MemoryAudit
    invoices: MemoryInvoices
    events: MemoryEvents
    tenants: MemoryTenants
    history: MemoryHistory

    def __enter__(self) -> MemoryUnitOfWork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback()  # nothing left to undo after a commit
        cases: MemoryCases | None = self.__dict__.get("cases")
        if cases is not None:  # what this unit read: the next one starts with nothing read
            cases.forget()
        self.store.spare_units.append(self)

    def commit(self) -> None:
        self.undo.clear()

    def rollback(self) -> None:
        undo = self.undo
        while undo:
            undo.pop()()


def _conflict(what: str) -> IntegrityError:
    return IntegrityError(what, None, Exception(what))


class MemoryCases:
    def __init__(self, store: MemoryStore, undo: list[Callable[[], None]]) -> None:
        self.store, self.undo = store, undo
        self._versions: dict[str, int] = {}  # as in CaseRepository: read here, at this version
        self._opened: set[str] = set()

    def forget(self) -> None:
        self._versions.clear()
        self._opened.clear()

    def _read(self, case_id: str | None) -> RecoveryCase | None:
        if case_id is None or case_id not in self.store.cases:
            return None
        case, version = self.store.cases[case_id]
        self._versions[case_id] = version
        return case

    def get(self, tenant_id: str, case_id: str, *, lock: bool = False) -> RecoveryCase | None:
        found = self.store.cases.get(case_id)
        if found is None or found[0].tenant_id != tenant_id:
            return None
        return self._read(case_id)

    def by_invoice(
        self, tenant_id: str, invoice_id: str, *, lock: bool = False
    ) -> RecoveryCase | None:
        return self._read(self.store.case_by_invoice.get((tenant_id, invoice_id)))

    def open_by(
        self,
        tenant_id: str,
        *,
        customer_id: str | None = None,
        subscription_id: str | None = None,
        lock: bool = False,
    ) -> list[RecoveryCase]:
        if customer_id is not None:
            ids = self.store.cases_by_customer.get((tenant_id, customer_id), [])
        else:
            assert subscription_id is not None
            ids = self.store.cases_by_subscription.get((tenant_id, subscription_id), [])
        found = [self.store.cases[i][0] for i in ids]
        found = [
            c
            for c in found
            if c.status is CaseStatus.OPEN
            and (subscription_id is None or c.subscription.id == subscription_id)
        ]
        found.sort(key=lambda c: (c.opened_at, c.id))
        return [case for case in found if self._read(case.id) is not None]

    def save(self, case: RecoveryCase, now: datetime) -> None:
        store, version = self.store, self._versions.get(case.id)
        previous = store.cases.get(case.id)
        if version is None:
            if previous is not None or (case.tenant_id, case.invoice_id) in store.case_by_invoice:
                raise _conflict(f"case {case.id} exists already")
            self._index(case)
            self._opened.add(case.id)
        elif previous is None or previous[1] != version:
            raise StaleDataError(f"case {case.id} changed since version {version}")
        store.cases[case.id] = (case, (version or 0) + 1)
        self._versions[case.id] = (version or 0) + 1
        self.undo.append(lambda: self._restore(case.id, previous, version))

    def _index(self, case: RecoveryCase) -> None:
        # Customer, subscription and invoice never change within a case: indexed once.
        store, tenant = self.store, case.tenant_id
        store.case_by_invoice[(tenant, case.invoice_id)] = case.id
        store.cases_by_customer.setdefault((tenant, case.customer.id), []).append(case.id)
        store.cases_by_subscription.setdefault((tenant, case.subscription.id), []).append(case.id)

    def _restore(
        self, case_id: str, previous: tuple[RecoveryCase, int] | None, version: int | None
    ) -> None:
        store = self.store
        if previous is not None:
            store.cases[case_id] = previous
        else:
            case = store.cases.pop(case_id)[0]
            tenant = case.tenant_id
            del store.case_by_invoice[(tenant, case.invoice_id)]
            store.cases_by_customer[(tenant, case.customer.id)].remove(case_id)
            store.cases_by_subscription[(tenant, case.subscription.id)].remove(case_id)
            self._opened.discard(case_id)
        if version is None:
            self._versions.pop(case_id, None)
        else:
            self._versions[case_id] = version

    def opened_here(self, case_id: str) -> bool:
        return case_id in self._opened

    def list(self, tenant_id: str, *, limit: int = 100, offset: int = 0) -> list[RecoveryCase]:
        """Newest first, as `CaseRepository.list` (its filters are not needed here)."""
        found = [c for c, _ in self.store.cases.values() if c.tenant_id == tenant_id]
        found.sort(key=lambda c: c.id)
        found.sort(key=lambda c: c.opened_at, reverse=True)  # stable: ids ascending in a tie
        return found[offset : offset + limit]


class MemoryActions:
    def __init__(self, store: MemoryStore, undo: list[Callable[[], None]]) -> None:
        self.store, self.undo = store, undo

    def sync(
        self, case: RecoveryCase, now: datetime, *, opened_here: bool = False
    ) -> list[tuple[str, PlannedAction | Scheduled]]:
        # The rows themselves, not ScheduledRow copies: the diff is read before any changes
        # (a canceled row keeps its key, times, rule and reason for the audit). Nor a copy of
        # the case's dict of rows: `diff_plan` reads it through before anything changes it.
        rows = {} if opened_here else self.store.scheduled_by_case.get(case.id, {})
        diff = diff_plan(rows, case.plan)
        for row in diff.canceled:
            self._update(row.id, status="canceled", updated_at=now)
        for row, planned in diff.moved:
            self._update(
                row.id,
                due_at=_utc(planned.due_at),
                rule=planned.rule,
                reason=planned.reason,
                updated_at=now,
            )
        for planned in diff.added:
            self._insert(
                case.tenant_id,
                case.id,
                planned.key,
                planned.type.value,
                planned.due_at,
                "scheduled",
                planned.rule,
                planned.reason,
                dict(planned.params),
                [],
                now,
            )
        return diff.changes

    def scheduled(self, case_id: str) -> list[ScheduledRow]:
        rows = self.store.scheduled_by_case.get(case_id, {}).values()
        return [ScheduledRow(r.id, r.key, r.type, r.due_at, r.rule, r.reason) for r in rows]

    def settle(
        self,
        action_id: int,
        status: str,
        now: datetime,
        *,
        was: str | None,
        effects: list[dict[str, Any]] | None = None,
    ) -> bool:
        row = self.store.actions.get(action_id)
        if row is None or (was is not None and row.status != was):
            return False
        changes: dict[str, Any] = {"status": status, "updated_at": now}
        if effects is not None:
            changes["effects"] = effects
        self._update(action_id, **changes)
        return True

    def add_effects(
        self, tenant_id: str, case_id: str, key: str, effects: list[dict[str, Any]], now: datetime
    ) -> None:
        self._insert(
            tenant_id,
            case_id,
            key,
            "effect",
            now,
            "running",
            "outbox",
            "carry out the decision's effects",
            {},
            effects,
            now,
        )

    def due(self, now: datetime, limit: int) -> Sequence[ActionRecord]:
        """Scheduled rows due by `now`, by due time then id (they stay queued until settled)."""
        queue, found = self.store.due_queue, []
        while queue and len(found) < limit:
            due_at, action_id, queued = queue[0]
            row = self.store.actions.get(action_id)
            if row is None or row.status != "scheduled" or row.queued != queued:
                heapq.heappop(queue)  # stale: moved, settled or undone since
                continue
            if due_at > now:
                break
            found.append(heapq.heappop(queue))
        for entry in found:
            heapq.heappush(queue, entry)
        return [self.store.actions[action_id] for _, action_id, _ in found]

    def next_due_at(self) -> datetime | None:
        """The earliest due time of a scheduled row: the queue's head, once the stale entries
        in front of it are dropped (asked at every step of a simulation)."""
        queue, actions = self.store.due_queue, self.store.actions
        while queue:
            due_at, action_id, queued = queue[0]
            row = actions.get(action_id)
            if row is not None and row.status == "scheduled" and row.queued == queued:
                return due_at
            heapq.heappop(queue)  # stale: moved, settled or undone since
        return None

    def running(self, limit: int) -> Sequence[ActionRecord]:
        running = self.store.running
        if not running:  # the usual case: effects are carried out as soon as decided
            return []
        return [self.store.actions[i] for i in sorted(running)[:limit]]

    def get(self, action_id: int) -> ActionRecord | None:
        return self.store.actions.get(action_id)

    def by_ids(self, action_ids: Sequence[int]) -> Sequence[ActionRecord]:
        found = (self.store.actions.get(i) for i in sorted(set(action_ids)))
        return [row for row in found if row is not None]

    def claim_notice_send(
        self, tenant_id: str, case_id: str, notice_id: str, now: datetime
    ) -> bool:
        sends = self.store.notice_sends
        if notice_id in sends:
            return False
        sends.add(notice_id)
        self.undo.append(lambda: sends.discard(notice_id))
        return True

    def _insert(
        self,
        tenant_id: str,
        case_id: str,
        key: str,
        type: str,
        due_at: datetime,
        status: str,
        rule: str,
        reason: str,
        params: dict[str, Any],
        effects: list[Any],
        now: datetime,
    ) -> None:
        store = self.store
        if status == "scheduled" and key in store.scheduled_by_case.get(case_id, ()):
            raise _conflict(f"action {key} of case {case_id} is scheduled already")
        action_id = store.next_id("actions", self.undo)
        row = ActionRecord(
            action_id,
            tenant_id,
            case_id,
            key,
            type,
            _utc(due_at),
            status,
            rule,
            reason,
            params,
            effects,
            now,
            now,
        )
        store.actions[action_id] = row
        self._index(row, requeue=True)

        def undo() -> None:
            self._unindex(row)
            del store.actions[action_id]

        self.undo.append(undo)

    def _update(self, action_id: int, **changes: Any) -> None:
        """Change a row and keep the indexes (scheduled by case, the due queue, running)."""
        row = self.store.actions[action_id]
        before = (row.status, row.due_at, row.rule, row.reason, row.effects, row.updated_at)
        queued = row.queued
        self._unindex(row)
        for name, value in changes.items():
            setattr(row, name, value)
        # A row that stays scheduled at the same time keeps its place in the due queue.
        self._index(row, requeue=before[0] != "scheduled" or row.due_at != before[1])

        def undo() -> None:
            self._unindex(row)
            row.status, row.due_at, row.rule, row.reason, row.effects, row.updated_at = before
            row.queued = queued
            self._index(row, requeue=True)

        self.undo.append(undo)

    def _unindex(self, row: ActionRecord) -> None:
        if row.status == "scheduled":
            del self.store.scheduled_by_case[row.case_id][row.key]
        elif row.status == "running":
            self.store.running.discard(row.id)

    def _index(self, row: ActionRecord, *, requeue: bool) -> None:
        store = self.store
        if row.status == "scheduled":
            store.scheduled_by_case.setdefault(row.case_id, {})[row.key] = row
            if requeue:
                store.queue_tokens += 1
                row.queued = store.queue_tokens
                heapq.heappush(store.due_queue, (row.due_at, row.id, row.queued))
        elif row.status == "running":
            store.running.add(row.id)


class MemoryLedger:
    def __init__(self, store: MemoryStore, undo: list[Callable[[], None]]) -> None:
        self.store, self.undo = store, undo

    def load(self, tenant_id: str, credential_keys: set[str], now: datetime) -> AttemptLedger:
        # As the SQL: a little more than the 30-day window, never-retry blocks at any age,
        # ordered by credential, time, then insertion.
        since = now - LEDGER_HORIZON - timedelta(days=1)
        entries: list[LedgerEntry] = []
        for key in sorted(credential_keys):
            records = self.store.ledger.get((tenant_id, key), ())  # kept in order: `add_many`
            entries.extend(
                r.entry for r in records if r.entry.attempted_at > since or r.entry.never_retry
            )
        return AttemptLedger(tuple(entries))

    def add(self, tenant_id: str, case_id: str, entry: LedgerEntry) -> None:
        self.add_many(tenant_id, case_id, [entry])

    def add_many(self, tenant_id: str, case_id: str, entries: Iterable[LedgerEntry]) -> None:
        for entry in entries:
            wait = entry.wait_until
            stored = entry  # times already in UTC (the usual case) stay as they are
            if entry.attempted_at.tzinfo is not UTC or (
                wait is not None and wait.tzinfo is not UTC
            ):
                stored = evolve(
                    entry,
                    attempted_at=_utc(entry.attempted_at),
                    wait_until=None if wait is None else _utc(wait),
                )
            record = _LedgerRecord(self.store.next_id("ledger", self.undo), stored)
            # A credential's records stay in the order `load` reads them (time, then id), not
            # sorted on every load: the new one goes after every record of its time or before
            # (ids only grow), which is the end unless an event reports an earlier time.
            by_card = self.store.ledger.setdefault((tenant_id, entry.credential_key), [])
            if by_card and by_card[-1].entry.attempted_at > stored.attempted_at:
                bisect.insort_right(by_card, record, key=_ledger_order)
                self.undo.append(partial(by_card.remove, record))
            else:
                by_card.append(record)
                self.undo.append(by_card.pop)
            if entry.attempt_id is not None:
                by_attempt = self.store.ledger_by_attempt.setdefault(entry.attempt_id, [])
                by_attempt.append(record)
                self.undo.append(by_attempt.pop)

    def uncount(self, attempt_id: str) -> None:
        for record in self.store.ledger_by_attempt.get(attempt_id, ()):
            entry = record.entry
            record.entry = evolve(entry, counted=False)
            self.undo.append(partial(setattr, record, "entry", entry))


def _ledger_order(record: _LedgerRecord) -> tuple[datetime, int]:
    return record.entry.attempted_at, record.id


class MemoryAudit:
    def __init__(self, store: MemoryStore, undo: list[Callable[[], None]]) -> None:
        self.store, self.undo = store, undo
        # Whether `add` keeps anything: ingest does not build entries that would be dropped.
        self.keeps = store.keep_audit

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
        if self.store.keep_audit:
            entry = dict(
                tenant_id=tenant_id,
                case_id=case_id,
                at=at,
                kind=kind,
                event_id=event_id,
                rule=rule,
                text=text,
                data=data,
            )
            self.store.audit.append(entry)
            self.undo.append(self.store.audit.pop)

    def flush(self) -> None:
        pass


class MemoryInvoices:
    def __init__(self, store: MemoryStore, undo: list[Callable[[], None]]) -> None:
        self.store, self.undo = store, undo

    def paid_at(self, tenant_id: str, invoice_id: str) -> datetime | None:
        return self.store.paid.get((tenant_id, invoice_id))

    def mark_paid(self, tenant_id: str, invoice_id: str, at: datetime, event_id: str) -> None:
        key = (tenant_id, invoice_id)
        if key not in self.store.paid:
            self.store.paid[key] = _utc(at)
            self.undo.append(lambda: self.store.paid.pop(key))


class MemoryEvents:
    def __init__(self, store: MemoryStore, undo: list[Callable[[], None]]) -> None:
        self.store, self.undo = store, undo

    def find(self, tenant_id: str, event_id: str) -> EventRecord | None:
        found = self.store.events.get((tenant_id, event_id))
        return None if found is None else EventRecord(found.outcome, list(found.case_ids))

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
        key = (tenant_id, event_id)
        if key in self.store.events:
            raise _conflict(f"event {event_id} recorded already")
        self.store.events[key] = EventRecord(outcome, list(case_ids))
        self.undo.append(lambda: self.store.events.pop(key))


class MemoryTenants:
    def __init__(self, store: MemoryStore, undo: list[Callable[[], None]]) -> None:
        self.store = store

    def visa_rule(self, tenant_id: str) -> str | None:
        found = self.store.tenants.get(tenant_id)
        return None if found is None else found[0]

    def policy_assignments(self, tenant_id: str) -> dict[str, str]:
        found = self.store.tenants.get(tenant_id)
        return {} if found is None else dict(found[1])

    def policy_name(self, tenant_id: str, storefront: str | None) -> str | None:
        rows = self.policy_assignments(tenant_id)
        return rows.get(storefront or "", rows.get(""))

    def retrying_providers(self, tenant_id: str) -> frozenset[str]:
        return frozenset()  # no webhook endpoints in a simulation


class MemoryHistory:
    """As `HistoryRepository`: a customer's earlier cases and signals, newest first, capped."""

    def __init__(self, store: MemoryStore, undo: list[Callable[[], None]]) -> None:
        self.store, self.undo = store, undo

    def past_cases(self, tenant_id: str, customer_id: str, since: datetime) -> list[PastCase]:
        ids = self.store.cases_by_customer.get((tenant_id, customer_id), [])
        found = [self.store.cases[i][0] for i in ids]
        found = [c for c in found if c.opened_at > since]
        found.sort(key=lambda c: c.opened_at, reverse=True)
        return [
            PastCase(c.id, c.opened_at, past_outcome(c.status.value, c.recovered_by))
            for c in found[:HISTORY_LIMIT]
        ]

    def signals(self, tenant_id: str, customer_id: str, since: datetime) -> list[CustomerSignal]:
        kept = self.store.signals.get((tenant_id, customer_id), [])
        found = sorted((s for s in kept if s.at > since), key=lambda s: s.at, reverse=True)
        return found[:HISTORY_LIMIT]

    def add_signals(
        self, tenant_id: str, customer_id: str, signals: Iterable[CustomerSignal]
    ) -> None:
        new = list(signals)
        if not new:
            return
        kept = self.store.signals.setdefault((tenant_id, customer_id), [])
        kept.extend(new)
        size = len(kept) - len(new)
        self.undo.append(lambda: kept.__delitem__(slice(size, None)))


class _OnFirstUse:
    """A unit of work's repository, built when first read, then a plain attribute of the unit
    (a non-data descriptor: the instance's own attribute wins from then on). Cheaper than a
    `__getattr__` fallback, which runs only after a failed lookup."""

    def __init__(self, name: str, kind: Callable[[MemoryStore, list[Callable[[], None]]], object]):
        self.name, self.kind = name, kind

    def __get__(self, unit: MemoryUnitOfWork | None, owner: type | None = None) -> Any:
        if unit is None:
            return self
        repository = self.kind(unit.store, unit.undo)
        unit.__dict__[self.name] = repository
        return repository


_REPOSITORIES: dict[str, Callable[[MemoryStore, list[Callable[[], None]]], object]] = {
    "cases": MemoryCases,
    "actions": MemoryActions,
    "ledger": MemoryLedger,
    "audit": MemoryAudit,
    "invoices": MemoryInvoices,
    "events": MemoryEvents,
    "tenants": MemoryTenants,
    "history": MemoryHistory,
}
for _name, _kind in _REPOSITORIES.items():
    setattr(MemoryUnitOfWork, _name, _OnFirstUse(_name, _kind))
