"""The API alone, for several server processes: `uvicorn --factory dunwell.api.asgi:create`.

`dunwell run` serves the API and runs the action runner in one process. To spread the API
over more cores, run `uvicorn --factory dunwell.api.asgi:create --workers N` beside it (or
beside the worker): each process builds its own engine, pool and caches from the DUNWELL_*
settings, and runs no actions. The database must be migrated already (`dunwell db upgrade`).
Every process sees a tenant or policy change made elsewhere within the tenant cache's TTL.
"""

from __future__ import annotations

from fastapi import FastAPI

from dunwell.api.app import create_app
from dunwell.bootstrap import build
from dunwell.logging_setup import configure_logging
from dunwell.settings import Settings


def create() -> FastAPI:
    settings = Settings()
    configure_logging(settings.log_format)
    return create_app(build(settings))
