"""SQLAlchemy 2 tables. The case is one JSON document plus indexed columns to query by."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no offset of its own)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: dunwell stores aware UTC times only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


Id = String(64)
# BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite so autoincrement works.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    visa_rule: Mapped[str] = mapped_column(String(8), default="2024")
    created_at: Mapped[datetime]


class PolicyAssignment(Base):
    """Which policy a tenant's storefront runs; storefront '' is the tenant's default."""

    __tablename__ = "policy_assignments"
    __table_args__ = (UniqueConstraint("tenant_id", "storefront"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(Id)
    storefront: Mapped[str] = mapped_column(String(200), default="")
    policy_name: Mapped[str] = mapped_column(String(200))


class EventRow(Base):
    """Every accepted event, once: the unique key is the deduplication."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("tenant_id", "event_id"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(Id)
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]]
    case_ids: Mapped[list[Any]]
    outcome: Mapped[str] = mapped_column(String(32))


class CaseRow(Base):
    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("tenant_id", "invoice_id"),
        Index("ix_cases_tenant_status", "tenant_id", "status"),
        Index("ix_cases_tenant_customer", "tenant_id", "customer_id"),
        Index("ix_cases_tenant_subscription", "tenant_id", "subscription_id"),
    )
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Id)
    invoice_id: Mapped[str] = mapped_column(String(255))
    customer_id: Mapped[str] = mapped_column(String(255))
    subscription_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    stage: Mapped[str | None] = mapped_column(String(32))
    lane: Mapped[str] = mapped_column(String(32))
    policy_name: Mapped[str] = mapped_column(String(200))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    next_action_at: Mapped[datetime | None]
    recovered_by: Mapped[str | None] = mapped_column(String(16))  # retry | customer
    state: Mapped[dict[str, Any]]
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]
    __mapper_args__ = {"version_id_col": version}


class ActionRow(Base):
    """A planned action with its due time: the durable schedule lives here, not in memory."""

    __tablename__ = "actions"
    __table_args__ = (
        # One scheduled row per planned key; done and canceled rows stay as history, so a key
        # can be planned again (a lane re-entered, a refused retry rescheduled).
        Index(
            "uq_actions_scheduled_key",
            "case_id",
            "key",
            unique=True,
            sqlite_where=text("status = 'scheduled'"),
            postgresql_where=text("status = 'scheduled'"),
        ),
        Index("ix_actions_case", "case_id", "id"),
        Index("ix_actions_status_due", "status", "due_at"),
        Index("ix_actions_workflow", "workflow_id"),
    )
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(Id)
    case_id: Mapped[str] = mapped_column(Id)
    key: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))  # scheduled | running | done | canceled
    rule: Mapped[str] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]]
    effects: Mapped[list[Any]]  # what running it asked for: re-run after a crash
    # The durable workflow carrying it out (set by the dispatcher; null in the embedded runner).
    workflow_id: Mapped[str | None] = mapped_column(String(120))
    dispatched_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AuditEntry(Base):
    """Append-only: a database trigger refuses UPDATE and DELETE (see the migration)."""

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_case", "case_id", "id"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(Id)
    case_id: Mapped[str | None] = mapped_column(Id)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(16))  # event | decision | effect
    event_id: Mapped[str | None] = mapped_column(String(255))
    rule: Mapped[str] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]]


class LedgerRow(Base):
    """One attempt on a payment credential, for the card networks' reattempt caps."""

    __tablename__ = "attempt_ledger"
    __table_args__ = (Index("ix_ledger_credential", "tenant_id", "credential_key", "attempted_at"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(Id)
    credential_key: Mapped[str] = mapped_column(String(255))
    attempted_at: Mapped[datetime]
    attempt_id: Mapped[str | None] = mapped_column(Id)
    case_id: Mapped[str] = mapped_column(Id)
    counted: Mapped[bool] = mapped_column(Boolean, default=True)
    never_retry: Mapped[bool] = mapped_column(Boolean, default=False)
    wait_until: Mapped[datetime | None]


class CustomerSignalRow(Base):
    """A decline, card update or dispute of a customer, for the card-testing rules
    (domain/risk.py): read per customer over the policy's lookback, newest first."""

    __tablename__ = "customer_signals"
    __table_args__ = (Index("ix_customer_signals_customer", "tenant_id", "customer_id", "at"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(Id)
    customer_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # decline | fraud_decline | card_update | dispute
    at: Mapped[datetime]
    credential_key: Mapped[str] = mapped_column(String(255))
    case_id: Mapped[str] = mapped_column(Id)
    event_id: Mapped[str] = mapped_column(String(255))


class NoticeSend(Base):
    """A notice handed to its channel, written before the hand-over: a re-run after a crash
    finds it and does not send a second message (at most once; the interrupted one is
    recorded as a failed delivery with the reason)."""

    __tablename__ = "notice_sends"
    notice_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Id)
    case_id: Mapped[str] = mapped_column(Id)
    started_at: Mapped[datetime]


class PaidInvoice(Base):
    """An invoice known to be paid, so a late failure report for it opens no case."""

    __tablename__ = "paid_invoices"
    tenant_id: Mapped[str] = mapped_column(Id, primary_key=True)
    invoice_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    paid_at: Mapped[datetime]
    event_id: Mapped[str] = mapped_column(String(255))


class DeadLetter(Base):
    """Input that could not be processed, kept verbatim for inspection and replay."""

    __tablename__ = "dead_letters"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(Id)
    source: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime]
    raw_body: Mapped[str] = mapped_column(Text)
    error: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))  # pending | replayed | failed
    replayed_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None]
