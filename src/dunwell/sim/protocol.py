"""The World protocol: everything the simulator may learn about customers, and nothing more.

A world stands for the outside of a real deployment: customers, their banks, the payment
provider and the channels. The harness talks to it only through this protocol, and the engine
only through the provider and notifier adapters built on it (`sim.adapters`). So dunwell learns
what a real deployment would learn: the events customers and providers report, the outcome of
each charge, and whether each notice was delivered. A world's hidden truth (a customer's payday,
balance, willingness to act) stays inside the world; only the end-of-run `oracle` may use it,
for the report, after the engine is done.

A world is built by a factory with the signature of `WorldFactory`; `docs/simulation.md` has a
worked example of a custom world. Optionally a world with several payment providers offers
`routing` (a `dunwell.domain.routing.Routing`): which of them can charge its cards. The harness
gives it to the engine as the tenant's routing table; each `ChargeRequest.provider` then says
where the engine sent the charge. A world whose `oracle` depends only on how it was built
(its seed and arguments), not on what happened in the run, may say so with
`fixed_oracle = True`: the harness then asks one fresh world for it, once for every policy,
while the slowest policy still runs (the built-in worlds do).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from dunwell.domain.events import DeclineReport, ExternalEvent, PaymentMethod
from dunwell.domain.money import Money
from dunwell.domain.records import direct_init


@direct_init
@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """One charge as dunwell sends it to a provider."""

    attempt_id: str
    idempotency_key: str  # the same key twice asks for the first answer again
    customer_id: str
    invoice_id: str
    amount: Money
    provider: str
    payment_method: PaymentMethod


class ChargeStatus(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"  # the issuer (or the network) answered no
    ERROR = "error"  # the provider failed before the network saw the charge


@direct_init
@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    status: ChargeStatus
    decline: DeclineReport | None = None  # provider code, network code, advice code
    reference: str | None = None
    detail: str | None = None

    @classmethod
    def approved(cls, reference: str | None = None) -> ChargeOutcome:
        return cls(ChargeStatus.APPROVED, reference=reference)

    @classmethod
    def declined(
        cls, code: str, advice: str | None = None, network_code: str | None = None
    ) -> ChargeOutcome:
        return cls(ChargeStatus.DECLINED, DeclineReport(code, network_code, advice, "declined"))

    @classmethod
    def error(cls, detail: str) -> ChargeOutcome:
        return cls(ChargeStatus.ERROR, detail=detail)


@direct_init
@dataclass(frozen=True, slots=True)
class NoticeRequest:
    """One notice as dunwell sends it to a channel: no more than a real channel is given."""

    notice_id: str
    customer_id: str
    template: str
    channel: str
    lane: str
    amount: Money


@direct_init
@dataclass(frozen=True, slots=True)
class NoticeOutcome:
    # False: this channel cannot reach the customer (a bounced address); the engine treats
    # it as permanent and may send the notice by the policy's fallback channel instead.
    delivered: bool
    # The events this notice causes later (a card update, an authentication, a cancellation),
    # each at its own `occurred_at`. The world plays them out through `events_due` when their
    # time comes, unless they are moot by then (the customer paid meanwhile).
    later: tuple[ExternalEvent, ...] = ()
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class OracleBound:
    """What the world's hidden truth says was recoverable at best, for the report only."""

    cases: int
    recoverable: int  # cases some charge in the window would have recovered
    recoverable_minor: int  # their amounts
    failed_minor: int
    window_days: int

    def as_dict(self) -> dict[str, object]:
        return {
            "cases": self.cases,
            "recoverable": self.recoverable,
            "recoverable_minor": self.recoverable_minor,
            "share_by_count": _share(self.recoverable, self.cases),
            "share_by_amount": _share(self.recoverable_minor, self.failed_minor),
            "window_days": self.window_days,
        }


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


@runtime_checkable
class World(Protocol):
    """What a world must answer. All times are aware datetimes in virtual time."""

    @property
    def start(self) -> datetime:
        """The virtual time the run starts at."""
        ...

    @property
    def horizon(self) -> datetime:
        """The virtual time the run ends at."""
        ...

    def next_event_at(self) -> datetime | None:
        """When the world's next own event happens (None: nothing more is coming)."""
        ...

    def events_due(self, at: datetime) -> list[ExternalEvent]:
        """The events that happened by `at`, in time order: the initial `payment.failed` of
        every case over the horizon, and what customers and providers do later (card updates,
        authentications, cancellations, payments made elsewhere)."""
        ...

    def charge(self, request: ChargeRequest, at: datetime) -> ChargeOutcome:
        """The provider's answer to one charge at virtual time `at`."""
        ...

    def deliver(self, notice: NoticeRequest, at: datetime) -> NoticeOutcome:
        """Deliver one notice at `at`; the answer says which events it causes later."""
        ...

    def oracle(self) -> OracleBound | None:
        """After the run: the share of cases some attempt in the window would have recovered
        (None when the world cannot tell). Never called while the engine runs."""
        ...


class WorldFactory(Protocol):
    """How `dunwell simulate --world MODULE:FACTORY` builds a world: keyword arguments only,
    the same arguments give the same world (every policy gets a fresh one)."""

    def __call__(self, *, seed: int, customers: int, days: int, start: datetime) -> World: ...


class Timeline:
    """A world's own future events in time order; ties keep insertion order (deterministic).

    `pop_due` asks `happens(customer_id, event)` for each event as its time comes, so a world
    can drop what became moot and update its hidden state at the moment the event happens.
    """

    def __init__(self) -> None:
        # (at, seq, customer id, event): plain tuples, compared in C; `seq` is unique, so a
        # comparison never reaches the customer or the event.
        self._heap: list[tuple[datetime, int, str, ExternalEvent]] = []
        self._seq = 0

    def add(self, customer_id: str, event: ExternalEvent) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (event.occurred_at, self._seq, customer_id, event))

    def next_at(self) -> datetime | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(
        self, at: datetime, happens: Callable[[str, ExternalEvent], bool]
    ) -> list[ExternalEvent]:
        due: list[ExternalEvent] = []
        heap = self._heap
        while heap and heap[0][0] <= at:
            _, _, customer_id, event = heapq.heappop(heap)
            if happens(customer_id, event):
                due.append(event)
        return due
