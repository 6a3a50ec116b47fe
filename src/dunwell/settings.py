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
    default_policy: str = "default"
    visa_rule: Literal["2024", "2025"] = "2024"
    max_attempts_per_case: int = Field(12, ge=1, le=35)
    worker_interval_seconds: float = Field(1.0, gt=0)
    log_format: Literal["json", "console"] = "json"
    # Charges go to this simulated processor over HTTP (`dunwell sim psp`); without it, to
    # the in-process one.
    sim_psp_url: str | None = None
