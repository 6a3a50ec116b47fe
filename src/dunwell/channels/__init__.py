"""Customer channels: the `Notifier` port and its adapters."""
