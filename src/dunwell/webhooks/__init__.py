"""Inbound provider webhooks: verified, then translated into canonical events."""
