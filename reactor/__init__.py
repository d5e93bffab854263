"""reactor: a gnet-style reactor on raw Linux syscalls (epoll, eventfd, accept4) through CFFI."""

from __future__ import annotations

__version__ = "0.1.0"
