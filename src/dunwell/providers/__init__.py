"""Payment providers: the port the action runner charges through, and its adapters."""
