"""A card processor you can crash against: `dunwell sim psp`.

A separate HTTP server that charges payment-method tokens, declines with realistic codes,
honours `Idempotency-Key` the way Stripe documents it (same key and parameters: the same
answer and one capture; same key, other parameters: an error; a request still in progress
under the key: 409), injects latency and 5xx errors on request, and lists at `GET /charges`
every request it received and every capture it made: the ledger the chaos check trusts.
"""
