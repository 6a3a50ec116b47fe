"""`dunwell routing validate FILE`: check a routing file (DUNWELL_ROUTING_FILE) before use."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from dunwell.domain.routing import RoutingError
from dunwell.providers.routing_file import load_routing

app = typer.Typer(help="Provider settings and routing tables.", no_args_is_help=True)
out, err = Console(), Console(stderr=True)


@app.command("validate")
def routing_validate(file: Path) -> None:
    """Check a routing file; prints every problem with its path, or what it configures."""
    try:
        tenants = load_routing(file)
    except RoutingError as exc:
        err.print(f"[red]{file}: invalid routing file[/]")
        for problem in exc.problems:
            err.print(f"  - {problem}")
        raise typer.Exit(1) from None
    for tenant, routing in sorted(tenants.items()):
        retrying = [p.name for p in routing.providers if p.retries_itself]
        takeover = [p.name for p in routing.providers if p.takeover_after_provider]
        routes = ", ".join(r.provider for r in routing.routes) or "none"
        out.print(
            f"{tenant}: routes {routes}; retries itself: {', '.join(retrying) or 'none'}; "
            f"takeover after: {', '.join(takeover) or 'none'}"
        )
    out.print(f"{file}: valid ({len(tenants)} tenants)")
