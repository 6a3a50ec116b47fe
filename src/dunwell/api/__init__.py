"""The HTTP API (FastAPI): events in, cases out, dead letters, health."""
