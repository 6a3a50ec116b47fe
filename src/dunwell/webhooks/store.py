"""Tables of the webhook endpoints and of the deliveries they accepted.

They live beside the adapters, on the same metadata as the rest of the schema; migration 0003
creates them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dunwell.store.tables import AutoId, Base, Id


class WebhookEndpoint(Base):
    """One provider account of one tenant. The secret is kept encrypted when a key is set
    (see `endpoints.py`), and never returned by the API after creation."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_tenant", "tenant_id"),)
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Id)
    provider: Mapped[str] = mapped_column(String(16))
    account: Mapped[str | None] = mapped_column(String(255))
    secret: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any]]
    # Whether the provider retries by itself (Stripe Smart Retries, Adyen Auto Rescue, the
    # app stores always): kept for the engine to take into account later.
    provider_retries_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    """A verified delivery, once: its raw body beside the ids of the canonical events made
    from it, or the reason nothing was made (an event type dunwell does not act on)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "delivery_id"),
        Index("ix_webhook_deliveries_tenant", "tenant_id", "id"),
    )
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(Id)
    endpoint_id: Mapped[str] = mapped_column(Id)
    provider: Mapped[str] = mapped_column(String(16))
    delivery_id: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))  # processed | acknowledged
    event_ids: Mapped[list[Any]]
    notes: Mapped[list[Any]]
    raw_body: Mapped[str] = mapped_column(Text)
