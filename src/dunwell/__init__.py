"""dunwell: turns failed subscription payments into recovered revenue instead of churn."""

__version__ = "0.1.0"
