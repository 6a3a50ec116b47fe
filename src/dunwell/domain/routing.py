"""Per-tenant provider settings and the routing table: who retries by itself, who can charge
which credential. Values and their parser only; the shell reads the file (docs/providers.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dunwell.domain.events import PaymentMethod
from dunwell.domain.lanes import SELF_RETRYING_PROVIDERS

# How a credential can be charged by a provider other than the one that vaulted it: a network
# token (the scheme's token, usable by any acquirer enrolled as its token requestor) or a
# copy kept in a vault of the merchant's own that forwards it. A plain provider token
# (`kind` absent) is only ever chargeable by its provider.
CREDENTIAL_KINDS = frozenset({"network_token", "vaulted"})


class RoutingError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    # The provider's own retries are on (Stripe Smart Retries, Adyen Auto Rescue): dunwell
    # plans no charge for a case that provider opened until it says it gave up.
    retries_itself: bool = False
    # When it gives up: dunwell retries within the caps (True) or the case ends churned.
    takeover_after_provider: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    brands: frozenset[str] = frozenset()  # lower case; empty: every brand
    regions: frozenset[str] = frozenset()  # ISO 3166 alpha-2 of the customer; empty: every
    credentials: frozenset[str] = CREDENTIAL_KINDS

    def accepts(self, method: PaymentMethod, country: str | None) -> bool:
        if method.kind not in self.credentials:
            return False
        if self.brands and (method.brand or "").lower() not in self.brands:
            return False
        return not self.regions or (country or "").upper() in self.regions


@dataclass(frozen=True, slots=True)
class Routing:
    providers: tuple[ProviderSettings, ...] = ()
    routes: tuple[Route, ...] = ()  # in order of preference

    def settings(self, provider: str) -> ProviderSettings:
        found = next((p for p in self.providers if p.name == provider), None)
        return found or ProviderSettings(provider)

    def retries_itself(self, provider: str) -> bool:
        return self.settings(provider).retries_itself

    def eligible(self, method: PaymentMethod, country: str | None) -> tuple[str, ...]:
        """Providers that can charge this credential, in the table's order."""
        names: list[str] = []
        for route in self.routes:
            if route.provider not in names and route.accepts(method, country):
                names.append(route.provider)
        return tuple(names)

    def with_retrying(self, providers: frozenset[str]) -> Routing:
        """The same routing with these providers' own retries on (webhook endpoints that
        declare `provider_retries_enabled`)."""
        known = {p.name for p in self.providers}
        merged = tuple(
            ProviderSettings(
                p.name, p.retries_itself or p.name in providers, p.takeover_after_provider
            )
            for p in self.providers
        )
        added = tuple(ProviderSettings(name, True) for name in sorted(providers - known))
        return Routing((*merged, *added), self.routes)


def _names(value: Any, path: str, problems: list[str], upper: bool = False) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{path}: a list of names")
        return frozenset()
    return frozenset(v.upper() if upper else v.lower() for v in value)


def parse_routing(data: Any, where: str = "") -> Routing:
    """One tenant's section: `providers` (name -> settings) and `routes` (a list)."""
    problems: list[str] = []
    if data is None:
        return Routing()
    if not isinstance(data, Mapping):
        raise RoutingError([f"{where or '.'}: a mapping with providers and routes"])
    unknown = set(data) - {"providers", "routes"}
    problems += [f"{where}{key}: unknown key" for key in sorted(unknown)]
    providers: list[ProviderSettings] = []
    raw_providers = data.get("providers") or {}
    if not isinstance(raw_providers, Mapping):
        problems.append(f"{where}providers: a mapping of provider name to settings")
        raw_providers = {}
    for name, raw in raw_providers.items():
        path = f"{where}providers.{name}"
        raw = raw or {}
        if not isinstance(raw, Mapping):
            problems.append(f"{path}: a mapping")
            continue
        for key in sorted(set(raw) - {"retries_itself", "takeover_after_provider"}):
            problems.append(f"{path}.{key}: unknown key")
        flags = {k: raw.get(k, False) for k in ("retries_itself", "takeover_after_provider")}
        for key, flag in flags.items():
            if not isinstance(flag, bool):
                problems.append(f"{path}.{key}: true or false")
        providers.append(
            ProviderSettings(
                str(name), flags["retries_itself"] is True, flags["takeover_after_provider"] is True
            )
        )
    routes: list[Route] = []
    raw_routes = data.get("routes") or []
    if not isinstance(raw_routes, list):
        problems.append(f"{where}routes: a list")
        raw_routes = []
    for index, raw in enumerate(raw_routes):
        path = f"{where}routes[{index}]"
        if not isinstance(raw, Mapping) or not isinstance(raw.get("provider"), str):
            problems.append(f"{path}: a mapping with a provider name")
            continue
        for key in sorted(set(raw) - {"provider", "brands", "regions", "credentials"}):
            problems.append(f"{path}.{key}: unknown key")
        provider = raw["provider"]
        if provider in SELF_RETRYING_PROVIDERS:
            problems.append(f"{path}.provider: {provider} charges only its own renewals")
        kinds = _names(
            raw.get("credentials", sorted(CREDENTIAL_KINDS)), f"{path}.credentials", problems
        )
        for kind in sorted(kinds - CREDENTIAL_KINDS):
            problems.append(
                f"{path}.credentials: {kind!r} is not one of {sorted(CREDENTIAL_KINDS)}"
            )
        routes.append(
            Route(
                provider,
                _names(raw.get("brands"), f"{path}.brands", problems),
                _names(raw.get("regions"), f"{path}.regions", problems, upper=True),
                kinds,
            )
        )
    if problems:
        raise RoutingError(problems)
    return Routing(tuple(providers), tuple(routes))


def parse_routing_file(data: Any) -> dict[str, Routing]:
    """The whole file: `tenants: {tenant id: section}`."""
    if not isinstance(data, Mapping) or set(data) - {"tenants"}:
        raise RoutingError([".: a mapping with one key, tenants"])
    tenants = data.get("tenants") or {}
    if not isinstance(tenants, Mapping):
        raise RoutingError(["tenants: a mapping of tenant id to its routing"])
    found: dict[str, Routing] = {}
    problems: list[str] = []
    for tenant, section in tenants.items():
        try:
            found[str(tenant)] = parse_routing(section, f"tenants.{tenant}.")
        except RoutingError as exc:
            problems += exc.problems
    if problems:
        raise RoutingError(problems)
    return found
