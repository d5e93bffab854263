"""Post hooks for HTTP expectations: ``expect_request(...).with_post_hook(Delay(0.5))``.

pytest-httpserver's ``pytest_httpserver.hooks``, for :class:`reactor.testing.HTTPHandler`.
A hook is any callable ``(request, response) -> response`` (an
:class:`~reactor.testing.HTTPResponse`, or anything ``to_response`` accepts).

* :class:`Chain`: several hooks as one.
* :class:`Delay`: answer late. It sleeps on the event-loop thread, as
  pytest-httpserver's sleeps on its only thread: other connections of that
  loop wait too. For a slow peer that blocks nothing, see
  :meth:`reactor.testing.FaultHandler.delay`.
* :class:`Garbage`: random bytes around the body.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .expectations import HTTPResponse, to_response

if TYPE_CHECKING:
    from .http import HTTPRequest

__all__ = ["Chain", "Delay", "Garbage"]


class Chain:
    """Call hooks one after the other, each on the response the previous one returned."""

    def __init__(self, *hooks: Callable[[HTTPRequest, HTTPResponse], Any]) -> None:
        self._hooks = hooks

    def __call__(self, request: HTTPRequest, response: HTTPResponse) -> HTTPResponse:
        """The response after every hook."""
        for hook in self._hooks:
            response = to_response(hook(request, response))
        return response


class Delay:
    """Sleep ``seconds`` before answering (on the event-loop thread)."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def __call__(self, request: HTTPRequest, response: HTTPResponse) -> HTTPResponse:
        """The response, unchanged, ``seconds`` later."""
        time.sleep(self._seconds)
        return response


class Garbage:
    """Add ``prefix_size`` random bytes before the body and ``suffix_size`` after it (new ones each time)."""

    def __init__(self, prefix_size: int = 0, suffix_size: int = 0) -> None:
        if prefix_size < 0 or suffix_size < 0:
            raise ValueError("prefix_size and suffix_size must be >= 0")
        self._prefix_size = prefix_size
        self._suffix_size = suffix_size

    def __call__(self, request: HTTPRequest, response: HTTPResponse) -> HTTPResponse:
        """The response with random bytes around its body."""
        response.set_data(os.urandom(self._prefix_size) + response.body + os.urandom(self._suffix_size))
        return response
