"""The simulator: worlds of failing payments, run through the real engine.

`dunwell simulate` compares policies on one world. `protocol` says what a world answers (and
all the harness may learn from it); `loading` finds a world by `--world` spec; `worlds` holds
the built-in ones (`basic`, over `population` and `issuer`; `realistic` and its variants);
`adapters` play the engine's provider and notifier ports over a world and record what passed;
`harness` drives the real ingest, `decide` and action runner over a real migrated SQLite
database in virtual time; `violations` checks the card networks' rules against the harness's
own `log`, independently of the engine's guardrails; `report` prints JSON or a table.
See docs/simulation.md.
"""
