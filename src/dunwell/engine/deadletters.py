"""Dead letters: input that could not be processed is kept verbatim, with why, for replay."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from dunwell.engine.event_schema import EventError, parse_event
from dunwell.engine.ingest import Ingest, IngestResult
from dunwell.store.tables import DeadLetter


def record(
    ingest: Ingest, tenant_id: str | None, source: str, raw: str, error: dict[str, Any]
) -> str:
    dead_letter_id = "dl_" + secrets.token_hex(12)
    with ingest.units() as uow:
        uow.deadletters.add(
            DeadLetter(
                id=dead_letter_id,
                tenant_id=tenant_id,
                source=source,
                received_at=ingest.clock.now(),
                raw_body=raw,
                error=error,
                status="pending",
                replayed_at=None,
                result=None,
            )
        )
        uow.commit()
    return dead_letter_id


@dataclass
class ReplayOutcome:
    ok: bool
    result: IngestResult | None = None
    error: dict[str, Any] | None = None


class DeadLetterNotFound(LookupError):
    pass


def replay(
    ingest: Ingest, dead_letter_id: str, tenant_id: str | None = None, body: str | None = None
) -> ReplayOutcome:
    """Parse and ingest the kept body again (or a corrected `body`); ingest's dedup makes a
    second replay of an already processed event harmless."""
    with ingest.units() as uow:
        row = uow.deadletters.get(dead_letter_id)
        if row is None or (tenant_id is not None and row.tenant_id != tenant_id):
            raise DeadLetterNotFound(dead_letter_id)
        raw, owner = body if body is not None else row.raw_body, row.tenant_id
        source = row.source
    if source.startswith("webhook:"):
        # A provider's body that failed verification must never be ingested, even if it is
        # shaped like a canonical event: the provider redelivers it once the cause is fixed.
        outcome = ReplayOutcome(
            False,
            error={"error": "not_replayable", "message": "webhook deliveries are not replayed"},
        )
    elif owner is None:
        outcome = ReplayOutcome(
            False, error={"error": "no_tenant", "message": "the request was not authenticated"}
        )
    else:
        try:
            event, payload = parse_event(raw)
            outcome = ReplayOutcome(True, ingest(owner, event, payload))
        except EventError as exc:
            outcome = ReplayOutcome(False, error={"error": exc.code, "problems": exc.problems})
    with ingest.units() as uow:
        row = uow.deadletters.get(dead_letter_id)
        assert row is not None
        row.replayed_at = ingest.clock.now()
        if outcome.ok and outcome.result is not None:
            row.status = "replayed"
            row.result = {
                "event_id": outcome.result.event_id,
                "case_ids": outcome.result.case_ids,
                "outcome": outcome.result.outcome,
                "duplicate": outcome.result.duplicate,
            }
        else:
            row.result = {"replay_error": outcome.error}
        uow.commit()
    return outcome
