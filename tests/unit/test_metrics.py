"""The engine's Prometheus metrics: counted per label values, as rendered for a scrape."""

from __future__ import annotations

import pytest

from dunwell.engine.metrics import Metrics

pytestmark = pytest.mark.unit


def test_counts_add_up_per_label_values_however_often_they_are_looked_up() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.events.labels("payment.failed", "opened").inc()
    metrics.events.labels("payment.failed", "updated").inc()
    metrics.actions.labels("retry", "declined").inc(2)
    metrics.provider_seconds.labels("sim").observe(0.25)
    metrics.provider_errors.labels("sim", "error").inc()
    text = metrics.render().decode()
    assert 'dunwell_events_total{outcome="opened",type="payment.failed"} 3.0' in text
    assert 'dunwell_events_total{outcome="updated",type="payment.failed"} 1.0' in text
    assert 'dunwell_actions_total{outcome="declined",type="retry"} 2.0' in text
    assert 'dunwell_provider_request_seconds_count{provider="sim"} 1.0' in text
    assert 'dunwell_provider_errors_total{provider="sim",reason="error"} 1.0' in text
    assert metrics.events.labels("payment.failed", "opened") is metrics.events.labels(
        "payment.failed", "opened"
    )
