"""Past charge attempts: one row per charge, the format `dunwell history import` reads.

CSV with a header, or Parquet (by the `.parquet` suffix, read with pyarrow); the columns
(see docs/scoring.md):

| column | required | meaning |
| --- | --- | --- |
| case_id | yes | the failed invoice or case the charge belongs to |
| first_failed_at | yes | ISO 8601 with an offset: the failure that opened the case |
| attempted_at | yes | ISO 8601 with an offset: when this charge was sent |
| attempt_number | yes | 1 for the first retry after the failure, 2 for the next, ... |
| outcome | yes | approved or declined (provider errors are not attempts: leave them out) |
| amount_minor | yes | the amount in minor units (cents) |
| currency | no | ISO 4217 |
| decline_code | no | the last decline code before this charge (the provider's) |
| lane | no | dunwell's lane for that decline; classified from decline_code when empty |
| provider | no | whose code table decline_code is in (default: stripe) |
| card_brand, country | no | the card's brand, the customer's country (ISO 3166 alpha-2) |
| timezone, segment | no | the customer's IANA timezone and segment |
| case_outcome | no | how the case ended: one of CASE_OUTCOMES, the same on every row of a case |
| case_closed_at | no | ISO 8601 with an offset: when it ended (required with an outcome but open) |

The two case columns let a backtest stop a candidate's retries where the customer ended the
case (paid or fixed the card, cancelled, disputed): a retry cannot come after that. The model
does not read them.

Bad rows are reported with their line number (CSV) or row number (Parquet) and reason and
left out; good rows are kept (dead-letter style), so one typo does not throw away a year of
history. Parquet values go through the same checks as CSV text: a timestamp column must
carry a time zone, and a float amount is refused like "19.99" (money is integer minor units).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dunwell.domain.case import CaseStatus, RecoveryCase
from dunwell.domain.declines import classify_decline
from dunwell.domain.events import DeclineReport
from dunwell.domain.lanes import Lane

REQUIRED = (
    "case_id",
    "first_failed_at",
    "attempted_at",
    "attempt_number",
    "outcome",
    "amount_minor",
)


# How a case ended, as a merchant's export or dunwell's own cases tell it. The customer's
# ends (`EXTERNAL_ENDS`) are the ones a backtest keeps in time: another schedule's retries
# would have stopped there too. The others are the schedule's own (a retry approved, the
# policy gave up) or not known yet.
CASE_OUTCOMES = (
    "recovered_by_retry",
    "recovered_by_customer",
    "canceled",
    "disputed",
    "churned",
    "written_off",
    "open",
)
EXTERNAL_ENDS = frozenset({"recovered_by_customer", "canceled", "disputed"})


@dataclass(frozen=True, slots=True)
class HistoryRow:
    case_id: str
    first_failed_at: datetime
    attempted_at: datetime
    attempt_number: int
    outcome: str  # approved | declined
    amount_minor: int
    currency: str = ""
    decline_code: str = ""
    lane: str = ""
    provider: str = ""
    card_brand: str = ""
    country: str = ""
    timezone: str = ""
    segment: str = ""
    case_outcome: str = ""  # CASE_OUTCOMES, or "" when not known
    case_closed_at: datetime | None = None

    @property
    def approved(self) -> bool:
        return self.outcome == "approved"


COLUMNS = tuple(f.name for f in fields(HistoryRow))


def case_end(case: RecoveryCase) -> tuple[str, datetime | None]:
    """A dunwell case's `case_outcome` and `case_closed_at`, for the rows built from it."""
    if case.status is CaseStatus.RECOVERED:
        by = "retry" if case.recovered_by == "retry" else "customer"
        return f"recovered_by_{by}", case.closed_at
    return case.status.value, case.closed_at


_DIGESTED = tuple(name for name in COLUMNS if name not in ("case_outcome", "case_closed_at"))


def history_digest(rows: Iterable[HistoryRow]) -> str:
    """A fingerprint of a training history, whatever its order: equal when no attempt was
    added, changed or dropped (a scheduled retraining skips a round that would learn the
    same thing again)."""
    # The case columns are left out: the model does not read them, so a case that closed
    # since the last round gives no reason to train again.
    lines = sorted("\x1f".join(str(getattr(row, name)) for name in _DIGESTED) for row in rows)
    return hashlib.sha256("\x1e".join(lines).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int  # CSV: the line in the file, the header is line 1; Parquet: the row, from 1
    reason: str
    unit: str = "line"  # "line" (CSV) or "row" (Parquet): how `line` counts


class HistoryError(ValueError):
    """The file as a whole cannot be read (missing, not CSV, required columns absent)."""


def read_history(path: Path) -> tuple[list[HistoryRow], list[BadRow]]:
    """Good rows and bad ones from a CSV file, or a Parquet file by its `.parquet` suffix.
    HistoryError when the file as a whole cannot be read."""
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path)
    return _read_csv(path)


def _require(path: Path, header: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise HistoryError(
            f"{path}: missing required column(s) {', '.join(missing)} "
            f"(have: {', '.join(header) or 'no header'})"
        )


def _read_csv(path: Path) -> tuple[list[HistoryRow], list[BadRow]]:
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise HistoryError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        _require(path, [h.strip() for h in reader.fieldnames or []])
        rows: list[HistoryRow] = []
        bad: list[BadRow] = []
        for index, raw in enumerate(reader, start=2):
            clean = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k}
            try:
                rows.append(parse_row(clean))
            except ValueError as exc:
                bad.append(BadRow(reader.line_num if reader.line_num else index, str(exc)))
    return rows, bad


def _read_parquet(path: Path) -> tuple[list[HistoryRow], list[BadRow]]:
    # Imported here: the CLI and the service start without loading Arrow.
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path)
    except OSError as exc:  # missing file; pyarrow's ArrowInvalid (not Parquet) is a ValueError
        raise HistoryError(f"cannot read {path}: {exc}") from None
    except (pa.ArrowException, ValueError) as exc:
        raise HistoryError(f"cannot read {path} as Parquet: {exc}") from None
    header = list(source.schema_arrow.names)
    _require(path, header)
    columns = [c for c in COLUMNS if c in header]
    rows: list[HistoryRow] = []
    bad: list[BadRow] = []
    number = 0
    try:
        for batch in source.iter_batches(batch_size=8192, columns=columns):
            for record in _microseconds(batch).to_pylist():
                number += 1
                clean = {name: _text(value) for name, value in record.items()}
                try:
                    rows.append(parse_row(clean))
                except ValueError as exc:
                    bad.append(BadRow(number, str(exc), "row"))
    except (OSError, ValueError, pa.ArrowException) as exc:  # a damaged page, a type Python
        # cannot hold: the file is refused whole rather than half imported
        raise HistoryError(f"cannot read {path} as Parquet after row {number}: {exc}") from None
    return rows, bad


def _microseconds(batch: Any) -> Any:
    """Nanosecond timestamps (what pandas writes) as microseconds: Python's datetime holds
    no nanoseconds, and a charge time needs none."""
    import pyarrow as pa

    for index, field in enumerate(batch.schema):
        kind = field.type
        if pa.types.is_timestamp(kind) and kind.unit == "ns":
            column = batch.column(index).cast(pa.timestamp("us", tz=kind.tz), safe=False)
            batch = batch.set_column(index, field.name, column)
    return batch


def _text(value: object) -> str:
    """A Parquet value as the text a CSV cell would hold, so both pass the same checks."""
    if value is None:
        return ""
    if isinstance(value, date):  # a datetime is a date too
        return value.isoformat()  # a naive timestamp reads back without an offset: refused
    return str(value).strip()


def parse_row(raw: dict[str, str]) -> HistoryRow:
    problems: list[str] = []

    def when(name: str) -> datetime | None:
        value = raw.get(name, "")
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            problems.append(f"{name}: {value!r} is not an ISO 8601 time")
            return None
        if at.tzinfo is None:
            problems.append(f"{name}: {value!r} has no UTC offset")
            return None
        return at

    def integer(name: str, low: int) -> int | None:
        value = raw.get(name, "")
        try:
            number = int(value)
        except ValueError:
            problems.append(f"{name}: {value!r} is not an integer")
            return None
        if number < low:
            problems.append(f"{name}: {number} is below {low}")
            return None
        return number

    case_id = raw.get("case_id", "")
    if not case_id:
        problems.append("case_id: empty")
    failed_at, attempted_at = when("first_failed_at"), when("attempted_at")
    if failed_at and attempted_at and attempted_at < failed_at:
        problems.append("attempted_at: before first_failed_at")
    number = integer("attempt_number", 1)
    amount = integer("amount_minor", 0)
    outcome = raw.get("outcome", "").lower()
    if outcome not in ("approved", "declined"):
        problems.append(f"outcome: {outcome!r} is not approved or declined")
    lane = raw.get("lane", "")
    if lane and lane not in {item.value for item in Lane}:
        problems.append(f"lane: {lane!r} is not one of {[item.value for item in Lane]}")
    ending, closed_at = raw.get("case_outcome", "").lower(), None
    if ending and ending not in CASE_OUTCOMES:
        problems.append(f"case_outcome: {ending!r} is not one of {list(CASE_OUTCOMES)}")
    if raw.get("case_closed_at", ""):
        closed_at = when("case_closed_at")
        if closed_at and attempted_at and closed_at < attempted_at:
            problems.append("case_closed_at: before attempted_at (the case ended before it)")
        if ending in ("", "open"):
            problems.append("case_closed_at: given, but case_outcome does not say how it ended")
    elif ending not in ("", "open"):
        problems.append(f"case_closed_at: required with case_outcome {ending!r}")
    zone = raw.get("timezone", "")
    if zone:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"timezone: {zone!r} is not an IANA timezone")
    if problems:
        raise ValueError("; ".join(problems))
    assert failed_at and attempted_at and number is not None and amount is not None
    code, provider, brand = (
        raw.get("decline_code", ""),
        raw.get("provider", ""),
        raw.get("card_brand", ""),
    )
    if not lane:
        report = DeclineReport(code or None, provider=provider or "stripe")
        lane = classify_decline(report, brand or None).lane.value
    return HistoryRow(
        case_id=case_id,
        first_failed_at=failed_at,
        attempted_at=attempted_at,
        attempt_number=number,
        outcome=outcome,
        amount_minor=amount,
        currency=raw.get("currency", "").upper(),
        decline_code=code,
        lane=lane,
        provider=provider,
        card_brand=brand,
        country=raw.get("country", "").upper(),
        timezone=zone,
        segment=raw.get("segment", ""),
        case_outcome=ending,
        case_closed_at=closed_at,
    )


def write_history(path: Path, rows: Iterable[HistoryRow]) -> int:
    count = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            data = asdict(row)
            data["first_failed_at"] = row.first_failed_at.isoformat()
            data["attempted_at"] = row.attempted_at.isoformat()
            data["case_closed_at"] = row.case_closed_at.isoformat() if row.case_closed_at else ""
            writer.writerow(data)
            count += 1
    return count
