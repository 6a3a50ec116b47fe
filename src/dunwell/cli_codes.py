"""`dunwell codes`: the decline code tables, one code's resolution, and the codes seen but
not known (read from the audit trail, where every unknown-code decision is recorded)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dunwell.domain.declines import Classification, CodeRow, classify_decline
from dunwell.domain.events import DeclineReport

codes_app = typer.Typer(
    help="Decline codes: the tables, a resolution, unknown codes.", no_args_is_help=True
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

# Tables that belong to no provider, selectable by these names in `codes list --provider`.
NETWORK_TABLES = {
    "iso8583": "iso8583_response_codes",
    "visa": "visa_decline_categories",
    "mastercard": "mastercard_advice_codes",
}


def row_view(row: CodeRow) -> dict[str, Any]:
    return {
        "file": row.file,
        "line": row.line,
        "code": row.code,
        "description": row.description,
        "lane": row.lane.value if row.lane else None,
        "network_category": row.network_category,
        **dict(row.extra),
        "url": row.source,
    }


def classification_view(found: Classification) -> dict[str, Any]:
    return {
        "provider": found.provider,
        "provider_code": found.provider_code,
        "network_code": found.network_code,
        "network_category": found.network_category,
        "advice_code": found.advice_code,
        "lane": found.lane.value,
        "retry_allowed": found.retry_allowed,
        "retry_after_seconds": int(found.retry_after.total_seconds())
        if found.retry_after
        else None,
        "known": found.known,
        "rule": found.rule,
        "source": row_view(found.source) if found.source else None,
    }


@codes_app.command("list")
def codes_list(
    provider: Annotated[
        str | None,
        typer.Option(
            help="stripe, adyen, braintree, or a network table: iso8583, visa, mastercard"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
) -> None:
    """Every code in the tables with its lane and source."""
    from dunwell.providers.taxonomy import PROVIDER_TABLES, builtin_taxonomy

    rows = builtin_taxonomy().rows()
    if provider is not None:
        key = provider.strip().lower()
        tables = {s.table for s in PROVIDER_TABLES.get(key, ())}
        if key in NETWORK_TABLES:
            tables.add(NETWORK_TABLES[key])
        if not tables:
            known = [*PROVIDER_TABLES, *NETWORK_TABLES]
            err.print(f"[red]no code table for {provider!r}[/] (known: {', '.join(known)})")
            raise typer.Exit(2)
        rows = tuple(r for r in rows if r.table in tables)
    if as_json:
        typer.echo(json.dumps({"codes": [row_view(r) for r in rows]}))
        return
    table = Table("file", "code", "description", "lane", "category", "source")
    for row in rows:
        table.add_row(
            row.file,
            row.code,
            row.description,
            row.lane.value if row.lane else row.get("effect") or "",
            row.network_category or row.get("category") or "",
            row.source,
        )
    out.print(table)


@codes_app.command("resolve")
def codes_resolve(
    provider: Annotated[str, typer.Option(help="whose code table: stripe, adyen, braintree, ...")],
    code: Annotated[str | None, typer.Option(help="the provider's decline code")] = None,
    network_code: Annotated[str | None, typer.Option(help="ISO 8583 response code")] = None,
    advice_code: Annotated[str | None, typer.Option(help="Mastercard merchant advice code")] = None,
    brand: Annotated[str | None, typer.Option(help="card brand: visa, mastercard, ...")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
) -> None:
    """How dunwell classifies one decline, and the table row (with its source) that decided."""
    from dunwell.providers.taxonomy import builtin_taxonomy

    report = DeclineReport(code, network_code, advice_code, provider=provider)
    found = classify_decline(report, brand, builtin_taxonomy())
    view = classification_view(found)
    if as_json:
        typer.echo(json.dumps(view))
        return
    out.print(f"lane: [bold]{found.lane.value}[/] (retry allowed: {found.retry_allowed})")
    out.print(f"rule: {found.rule}")
    out.print(f"network category: {found.network_category or '(none)'}")
    if found.retry_after is not None:
        out.print(f"next attempt not before: {found.retry_after} after the decline")
    if found.source is None:
        out.print("source: none, the code is unknown (a conservative lane)")
    else:
        s = found.source
        out.print(f"source: {s.file} line {s.line}: {s.code} {s.description!r}")
        out.print(f"        {s.source}")


@codes_app.command("unknown")
def codes_unknown(
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
) -> None:
    """Decline codes seen that no table knows, with how often and when: add them to a table."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        views = unknown_codes(tenant)
    except SQLAlchemyError as exc:
        err.print(f"[red]cannot read the audit trail[/]: {str(exc).splitlines()[0]}")
        err.print("is DUNWELL_DATABASE_URL right, and migrated (dunwell db upgrade)?")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({"unknown_codes": views}))
        return
    if not views:
        out.print("no unknown decline codes seen")
        return
    table = Table("provider", "code", "count", "first seen", "last seen")
    for v in views:
        table.add_row(v["provider"], v["code"], str(v["count"]), v["first_seen"], v["last_seen"])
    out.print(table)


def unknown_codes(tenant: str | None = None) -> list[dict[str, Any]]:
    """(provider, code) pairs of every unknown-code decision in the audit trail."""
    from sqlalchemy import select

    from dunwell.settings import Settings
    from dunwell.store.database import make_engine, make_sessionmaker
    from dunwell.store.tables import AuditEntry

    engine = make_engine(Settings().database_url)
    query = select(AuditEntry.at, AuditEntry.data).where(AuditEntry.rule == "declines.unknown_code")
    if tenant is not None:
        query = query.where(AuditEntry.tenant_id == tenant)
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        with make_sessionmaker(engine)() as session:
            for at, data in session.execute(query.order_by(AuditEntry.id)):
                inputs = (data or {}).get("inputs", {})
                key = (inputs.get("provider") or "", inputs.get("provider_code") or "")
                stamp = at.isoformat()
                entry = seen.setdefault(
                    key,
                    {"provider": key[0], "code": key[1], "count": 0, "first_seen": stamp},
                )
                entry["count"] += 1
                entry["first_seen"] = min(entry["first_seen"], stamp)
                entry["last_seen"] = max(entry.get("last_seen", stamp), stamp)
    finally:
        engine.dispose()
    return sorted(seen.values(), key=lambda v: (-v["count"], v["provider"], v["code"]))
