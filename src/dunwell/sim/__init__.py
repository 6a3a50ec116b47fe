"""The simulator: a small built-in world of failing cards, run through the real engine.

`dunwell simulate` compares policies on one population. `population` draws the customers and
their hidden truth; `issuer` answers charges from it; `world` plays the payment provider and
the notifier and queues what customers do on their own; `harness` drives the real ingest,
`decide` and action runner over a real migrated SQLite database in virtual time; `violations`
checks the card networks' rules against the world's own `log`, independently of the engine's
guardrails; `report` prints the result as JSON or a table.
"""
