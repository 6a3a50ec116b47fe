"""The simulator: a small built-in world of failing cards, run through the real engine.

`dunwell simulate` compares policies on one population: `world` plays the customers, their
issuers and the payment provider; `harness` drives the real ingest, `decide` and action
runner over a real migrated SQLite database in virtual time; `violations` checks the card
networks' rules against the world's own log, independently of the engine's guardrails.
"""
