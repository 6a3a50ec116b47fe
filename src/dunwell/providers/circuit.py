"""A circuit breaker per provider: stop hammering a provider that keeps failing.

After `threshold` technical failures within `window`, the circuit opens: charges are not
sent for `cool_down`, and come back to the engine as provider errors, so the attempt is
rescheduled on the technical backoff, not spent (technical failures never count against the
card networks' caps). Then one charge is let through (half open): a success closes the
circuit, a failure opens it again. Time comes from the engine's clock.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class _State:
    failures: deque[datetime] = field(default_factory=deque)
    open_until: datetime | None = None
    probing: bool = False


class CircuitBreaker:
    def __init__(
        self,
        threshold: int = 5,
        window: timedelta = timedelta(minutes=1),
        cool_down: timedelta = timedelta(seconds=30),
    ) -> None:
        self.threshold, self.window, self.cool_down = threshold, window, cool_down
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def allow(self, provider: str, now: datetime) -> bool:
        with self._lock:
            state = self._states.get(provider)
            if state is None:  # not `setdefault`: it would build a state on every call
                state = self._states[provider] = _State()
            if state.open_until is None:
                return True
            if now < state.open_until or state.probing:
                return False
            state.probing = True  # half open: this one charge tests the provider
            return True

    def record(self, provider: str, ok: bool, now: datetime) -> None:
        with self._lock:
            state = self._states.get(provider)
            if ok:
                # A success closes the circuit: a fresh state, unless it is one already.
                if state is None or state.failures or state.open_until is not None or state.probing:
                    self._states[provider] = _State()
                return
            if state is None:
                state = self._states[provider] = _State()
            state.failures.append(now)
            while state.failures and state.failures[0] <= now - self.window:
                state.failures.popleft()
            if state.probing or len(state.failures) >= self.threshold:
                state.open_until, state.probing = now + self.cool_down, False
                state.failures.clear()

    def paused(self, now: datetime) -> tuple[tuple[str, datetime], ...]:
        """Providers whose circuit is open at `now`, with when it lets a charge through:
        the engine plans around them (a backup provider, or later) instead of sending."""
        with self._lock:
            return tuple(
                (name, state.open_until)
                for name, state in sorted(self._states.items())
                if state.open_until is not None and now < state.open_until
            )

    def is_open(self, provider: str, now: datetime) -> bool:
        with self._lock:
            state = self._states.get(provider)
            return state is not None and state.open_until is not None and now < state.open_until
