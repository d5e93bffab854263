"""reactor's internals (gnet: ``internal/``): the syscall layer, socket helpers, the poller, timers and threads.

Nothing here imports from the modules above it (``reactor.connection``,
``reactor.eventloop``, ...): the dependency arrows point down only.
"""
