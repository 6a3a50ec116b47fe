"""Reads the routing file (DUNWELL_ROUTING_FILE): per tenant, the provider settings and the
routing table. Parsed strictly at start-up by `dunwell.domain.routing.parse_routing_file`."""

from __future__ import annotations

from pathlib import Path

import yaml

from dunwell.domain.routing import Routing, RoutingError, parse_routing_file


def load_routing(path: Path | None) -> dict[str, Routing]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RoutingError([f"{path}: {exc}"]) from exc
    try:
        return parse_routing_file(data)
    except RoutingError as exc:
        raise RoutingError([f"{path}: {p}" for p in exc.problems]) from None
