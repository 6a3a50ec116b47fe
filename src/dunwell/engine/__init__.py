"""The imperative shell: ingest, the action runner, the clock, and their wiring."""
