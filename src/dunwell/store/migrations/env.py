"""Alembic environment: the URL comes from the caller's config, the metadata from the tables."""

from __future__ import annotations

from alembic import context

from dunwell.store.database import make_engine
from dunwell.store.tables import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "dunwell.store.migrate sets sqlalchemy.url"

engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
engine.dispose()
