"""Runnable example servers: ``python -m reactor.examples.http``, ``python -m reactor.examples.echo``."""
