"""Loopback stand-ins for the providers' APIs, speaking their documented wire formats closely
enough that the official SDKs work against them unmodified. Never the internet."""
