"""Every public class, function and method has a docstring of its own (issue 14).

``help(reactor.EventServer.react)`` used to be empty: the text lived only on
the ``EventHandler`` protocol. This walks ``reactor.__all__`` and
``reactor.testing.__all__``: each class and function, and each public
method or property of those classes that reactor defines (wherever in the
class hierarchy: an inherited method is checked where it is defined), must
carry a non-empty ``__doc__`` of its own, not one inherited through
``inspect.getdoc``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import reactor
import reactor.testing


def _own_doc(obj: Any) -> str:
    if isinstance(obj, property):
        return (obj.fget.__doc__ if obj.fget is not None else None) or obj.__doc__ or ""
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    return getattr(obj, "__doc__", None) or ""


def _is_reactors(obj: Any) -> bool:
    if isinstance(obj, property):
        obj = obj.fget
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    return inspect.isfunction(obj) and obj.__module__.startswith("reactor")


def public_api() -> Iterator[tuple[str, Any]]:
    """``(qualified name, object)`` for every public class, function, method and property."""
    seen: set[int] = set()
    for package in (reactor, reactor.testing):
        for name in package.__all__:
            obj = getattr(package, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue  # constants and type aliases document themselves where they are defined
            seen.add(id(obj))
            yield f"{package.__name__}.{name}", obj
            if not inspect.isclass(obj):
                continue
            for attr in dir(obj):
                if attr.startswith("_"):
                    continue
                for klass in obj.__mro__:
                    if attr in vars(klass):
                        member = vars(klass)[attr]
                        break
                else:  # pragma: no cover - dir() lists only what the MRO has
                    continue
                if _is_reactors(member) and id(member) not in seen:
                    seen.add(id(member))
                    yield f"{klass.__module__}.{klass.__qualname__}.{attr}", member


def test_the_walk_covers_the_api() -> None:
    names = {name for name, _ in public_api()}
    assert len(names) > 150
    for expected in ("reactor.handler.EventServer.react", "reactor.connection.Conn.async_write",
                     "reactor.client.Client.dial", "reactor.testing.background.BackgroundServer.port",
                     "reactor.testing.serve_in_background"):
        assert expected in names, expected


#: Names allowed to lack a docstring for now (none left); the test below
#: fails as soon as one of these gets its docstring, so that the list only
#: ever shrinks.
PENDING: set[str] = set()


def test_every_public_name_has_its_own_docstring() -> None:
    missing = {name for name, obj in public_api() if not _own_doc(obj).strip()}
    unexpected = sorted(missing - PENDING)
    assert not unexpected, f"{len(unexpected)} public names without a docstring of their own:\n" + "\n".join(unexpected)
    assert missing == PENDING, f"documented now, remove from PENDING: {sorted(PENDING - missing)}"
