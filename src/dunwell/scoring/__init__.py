"""Learned retry timing, the shell part: history, training, the model store.

`history` reads and writes past attempts (CSV), `features` turns them (or a simulation's own
log) into training rows with the core's `retry_features`, `model` trains and validates a
gradient-boosted classifier and wraps it as the core's `RetryScorer`, and `store` keeps
versioned models with their manifest. See docs/scoring.md.
"""
