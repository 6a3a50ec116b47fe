"""`dunwell webhooks add|list`: configure inbound provider webhook endpoints."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dunwell.settings import Settings

app = typer.Typer(help="Inbound provider webhook endpoints.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@app.command("add")
def add(
    tenant: Annotated[str, typer.Option(help="the tenant the endpoint feeds")],
    provider: Annotated[
        str, typer.Option(help="stripe, adyen, braintree, checkout, apple or google")
    ],
    secret: Annotated[
        str | None, typer.Option(help="the provider's signing secret (generated for google)")
    ] = None,
    account: Annotated[str | None, typer.Option(help="provider account label")] = None,
    provider_retries: Annotated[
        bool, typer.Option(help="the provider retries failed charges itself")
    ] = False,
    config: Annotated[str | None, typer.Option(help="JSON object of provider settings")] = None,
) -> None:
    """Create an endpoint; prints its id and URL path (and a generated secret, once)."""
    from dunwell.bootstrap import build
    from dunwell.webhooks import endpoints

    services = build(Settings())
    try:
        created = endpoints.create(
            services.sessions,
            services.settings.secret_key,
            services.clock.now(),
            tenant_id=tenant,
            provider=provider,
            secret=secret,
            account=account,
            provider_retries_enabled=provider_retries,
            config=json.loads(config) if config else None,
        )
    except (endpoints.EndpointError, ValueError) as exc:
        err.print(f"[red]cannot add[/]: {exc}")
        raise typer.Exit(1) from None
    finally:
        services.close()
    view = endpoints.view(created.endpoint)
    if created.secret_shown:
        view["secret"] = created.secret_shown
    out.print_json(json.dumps(view))


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
) -> None:
    """Endpoints, oldest first; secrets are never shown."""
    from dunwell.bootstrap import build
    from dunwell.webhooks import endpoints

    services = build(Settings())
    try:
        views = [endpoints.view(r) for r in endpoints.list_for(services.sessions, tenant)]
    finally:
        services.close()
    if as_json:
        out.print_json(json.dumps({"webhook_endpoints": views}))
        return
    table = Table("id", "tenant", "provider", "account", "url path", "provider retries")
    table.columns[0].no_wrap = table.columns[4].no_wrap = True
    for v in views:
        table.add_row(
            v["id"],
            v["tenant_id"],
            v["provider"],
            v["account"] or "",
            v["url_path"],
            "yes" if v["provider_retries_enabled"] else "no",
        )
    out.print(table)
