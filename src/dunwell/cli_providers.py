"""`dunwell providers add|list`: a tenant's provider accounts for outbound charges.

Credentials are read from a file or stdin, never from the command line (it would leave them
in shell history and process listings), and stored encrypted (DUNWELL_SECRET_KEY).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dunwell.settings import Settings

app = typer.Typer(
    help="Provider accounts that charge (Stripe, Adyen, Braintree).", no_args_is_help=True
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@app.command("add")
def add(
    tenant: Annotated[str, typer.Option(help="the tenant whose account it is")],
    provider: Annotated[str, typer.Option(help="stripe, adyen or braintree")],
    account: Annotated[str, typer.Option(help="account label; adding it again rotates it")],
    credentials_file: Annotated[
        str,
        typer.Option(
            help="JSON object of credentials, '-' for stdin. stripe: api_key; adyen: api_key; "
            "braintree: public_key, private_key"
        ),
    ],
    config: Annotated[
        str | None,
        typer.Option(
            help="JSON object of settings. adyen: merchant_account, environment, "
            "live_endpoint_prefix; braintree: merchant_id, environment; any: api_base"
        ),
    ] = None,
) -> None:
    """Add (or rotate) an account; prints it without its credentials."""
    from dunwell.bootstrap import build
    from dunwell.providers import accounts

    try:
        text = sys.stdin.read() if credentials_file == "-" else Path(credentials_file).read_text()
        credentials: dict[str, Any] = json.loads(text)
        settings: dict[str, Any] = json.loads(config) if config else {}
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot add[/]: {exc}")
        raise typer.Exit(1) from None
    services = build(Settings())
    try:
        row = accounts.create(
            services.sessions,
            services.settings.secret_key,
            services.clock.now(),
            tenant_id=tenant,
            provider=provider,
            account=account,
            credentials=credentials,
            config=settings,
            operator=True,
        )
    except accounts.AccountError as exc:
        err.print(f"[red]cannot add[/]: {exc}")
        raise typer.Exit(1) from None
    finally:
        services.close()
    out.print_json(json.dumps(accounts.view(row)))


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
) -> None:
    """Accounts, oldest first; credentials are never shown."""
    from dunwell.bootstrap import build
    from dunwell.providers import accounts

    services = build(Settings())
    try:
        views = [accounts.view(r) for r in accounts.list_for(services.sessions, tenant)]
    finally:
        services.close()
    if as_json:
        out.print_json(json.dumps({"provider_accounts": views}))
        return
    table = Table("id", "tenant", "provider", "account", "config", "created")
    table.columns[0].no_wrap = True
    for v in views:
        table.add_row(
            v["id"],
            v["tenant_id"],
            v["provider"],
            v["account"],
            json.dumps(v["config"]),
            v["created_at"],
        )
    out.print(table)
