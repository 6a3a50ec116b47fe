"""Tenant facts read on every request, cached: API key -> tenant, visa rule, policy assignments.

They change rarely (a key rotated, a policy assigned), and reading them cost two or three
queries per event. Changes made through this process (`ensure_tenant`, `assign_policy`) call
`invalidate`, so they apply at once here; another process (the CLI, a second server) sees
them after at most `ttl` seconds. An unknown key is never cached, so a new tenant's key works
at once everywhere; nor is an unknown tenant's profile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dunwell.store.unit_of_work import Units

DEFAULT_TTL_SECONDS = 30.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TenantProfile:
    visa_rule: str
    policies: dict[str, str]  # storefront -> policy name; '' is the tenant's default

    def policy_name(self, storefront: str | None) -> str | None:
        return self.policies.get(storefront or "", self.policies.get(""))


class TenantCache:
    def __init__(
        self,
        units: Units,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.units = units
        self.ttl = ttl_seconds
        self._now = monotonic
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[float, str]] = {}
        self._profiles: dict[str, tuple[float, TenantProfile]] = {}
        # Bumped by invalidate: a read that started before it must not store what it read.
        self._generation = 0

    def cached_tenant_for_key(self, key_hash: str) -> str | None:
        """`tenant_for_key` without touching the database: None when not cached."""
        hit = self._keys.get(key_hash)
        return hit[1] if hit is not None and hit[0] > self._now() else None

    def tenant_for_key(self, key_hash: str) -> str | None:
        """The id of the tenant whose API key hashes to `key_hash`, or None."""
        cached = self.cached_tenant_for_key(key_hash)
        if cached is not None:
            return cached
        generation = self._generation
        with self.units() as uow:
            tenant_id = uow.tenants.id_by_key_hash(key_hash)
        if tenant_id is not None:
            self._store(self._keys, key_hash, tenant_id, generation)
        return tenant_id

    def profile(self, tenant_id: str) -> TenantProfile | None:
        """Visa rule and policy assignments of a tenant; None for an unknown tenant."""
        hit = self._profiles.get(tenant_id)
        if hit is not None and hit[0] > self._now():
            return hit[1]
        generation = self._generation
        with self.units() as uow:
            visa_rule = uow.tenants.visa_rule(tenant_id)
            policies = uow.tenants.policy_assignments(tenant_id)
        if visa_rule is None:
            return None
        profile = TenantProfile(visa_rule, policies)
        self._store(self._profiles, tenant_id, profile, generation)
        return profile

    def forget(self, tenant_id: str) -> bool:
        """Drop one tenant's cached profile; whether there was one."""
        with self._lock:
            self._generation += 1
            return self._profiles.pop(tenant_id, None) is not None

    def invalidate(self) -> None:
        """Forget everything: tenants, keys or assignments were changed in this process."""
        with self._lock:
            self._generation += 1
            self._keys.clear()
            self._profiles.clear()

    def _store(
        self, cache: dict[str, tuple[float, T]], key: str, value: T, generation: int
    ) -> None:
        with self._lock:
            if generation == self._generation:
                cache[key] = (self._now() + self.ttl, value)
