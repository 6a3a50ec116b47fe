"""Built-in worlds, by the name `dunwell simulate --world builtin:NAME` selects.

`basic` is small and fast (the default); `realistic` models paydays, holidays, local time,
outages and customer behaviour (see `docs/simulation.md`), and its variants change the payday
calendars, decline mixes and timezones to make worlds unlike the one dunwell was tuned on.
"""
