"""One settings class, read from DUNWELL_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DUNWELL_", extra="ignore")

    database_url: str = "sqlite:///./dunwell.db"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_key: str | None = Field(None, min_length=16)
    policy_dir: Path | None = None
    # Per-tenant provider settings and routing table (YAML, docs/providers.md); none: every
    # case is charged by the provider that reported it, and no provider retries by itself.
    routing_file: Path | None = None
    default_policy: str = "default"
    visa_rule: Literal["2024", "2025"] = "2024"
    max_attempts_per_case: int = Field(12, ge=1, le=35)
    log_format: Literal["json", "console"] = "json"
    # Charges go to this simulated processor over HTTP (`dunwell sim psp`); without it, to
    # the in-process one.
    sim_psp_url: str | None = None
    # Durable execution (DBOS). The executor id must be stable across restarts of one
    # worker (its interrupted work is recovered under it) and unique among live workers.
    worker_id: str | None = None
    dbos_system_database_url: str | None = None
    dbos_schema: str = "dbos"  # PostgreSQL schema of DBOS's tables
    dispatch_batch_size: int = Field(20, ge=1, le=500)
    charge_concurrency: int = Field(8, ge=1, le=256)
    # Per provider, across all workers: "sim=200/1,stripe=50/1" (charges per seconds).
    provider_rate_limits: str = ""
    # Learned retry timing: the folder of versioned models (`dunwell scoring train`); the
    # newest one is used by policies with `align: learned`. None or empty: cold-start rules.
    model_dir: Path | None = None
    # `dunwell run` retrains each tenant whose policies use the model, on its own attempts of
    # the last `retrain_days`, this often ("off": never; then run `dunwell scoring train`).
    retrain_every: str = "24h"
    retrain_days: int = Field(365, ge=1, le=3650)
    # Model versions whose files are kept (per folder); older ones keep only their manifest.
    model_keep: int = Field(30, ge=1)

    def rate_limits(self) -> dict[str, tuple[int, float]]:
        limits: dict[str, tuple[int, float]] = {}
        for item in filter(None, (p.strip() for p in self.provider_rate_limits.split(","))):
            try:
                name, spec = item.split("=", 1)
                count, period = spec.split("/", 1)
                limits[name.strip()] = (int(count), float(period))
            except ValueError:
                raise ValueError(
                    f"DUNWELL_PROVIDER_RATE_LIMITS: {item!r} is not provider=COUNT/SECONDS"
                ) from None
        return limits

    # Encrypts webhook endpoint secrets at rest (Fernet, key derived from this value). Without
    # it they are stored as given, and only never shown again by the API.
    secret_key: str | None = Field(None, min_length=16)
