"""The benchmark peers written in Python: one small server per I/O layer, same application logic.

Each module is runnable as ``python -m bench.servers.<name> --mode echo|http
--port P [--host H]``, stops cleanly on SIGTERM/SIGINT, and prints nothing
unless something goes wrong.  The application logic lives in
:mod:`bench.servers.common` (HTTP) or is a one-liner (echo), so that the
peers differ only in how bytes get in and out of the process.
"""
