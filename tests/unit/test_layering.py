"""The layout's rules, checked on the source: layers point down, and no object edits another's private state.

docs/architecture.md states both rules; these tests keep them true:

* ``reactor/internal`` and ``reactor/pkg`` (gnet's ``internal/`` and
  ``pkg/``) never import the modules above them;
* no library module assigns, deletes or calls through an underscore
  attribute of anything but ``self``/``cls`` (``c._opened = True`` from the
  loop, ``c._outbound.push(...)``, ``c._fail()``): the owner offers a method
  instead. Plain *reads* are allowed (the loop's hot path reads a few of
  Conn's fields rather than paying a method call per event; see
  ``EventLoop._on_event``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "reactor"
LIBRARY = sorted(p for p in PACKAGE.rglob("*.py") if "examples" not in p.parts)
OWNERS = {"self", "cls"}


def _private(attr: str) -> bool:
    return attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__"))


def _owner(node: ast.expr) -> str | None:
    """The root name of an attribute chain (``c`` for ``c._outbound._len``), or None."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _through_foreign_private(node: ast.expr, module_names: set[str]) -> str | None:
    """The first ``x._private`` link of an attribute chain whose root ``x`` is not self/cls or a module."""
    chain = []
    while isinstance(node, ast.Attribute):
        chain.append(node)
        node = node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super":
        return None  # a subclass using its base class's own private method
    root = node.id if isinstance(node, ast.Name) else None
    if root in OWNERS or root in module_names:
        return None
    for link in reversed(chain):  # from the root outwards
        if _private(link.attr):
            return ast.unparse(link)
    return None


def foreign_private_edits(path: Path) -> list[str]:
    return foreign_private_edits_in(path.read_text(), str(path.relative_to(ROOT)))


def foreign_private_edits_in(source: str, name: str) -> list[str]:
    tree = ast.parse(source, name)
    module_names = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    problems = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            targets = [node.func]  # a call through another object's private field or method
        for target in targets:
            for sub in ast.walk(target) if isinstance(target, ast.Tuple) else [target]:
                if isinstance(sub, ast.Attribute):
                    link = _through_foreign_private(sub, module_names)
                    if link is not None:
                        problems.append(f"{name}:{node.lineno}: {ast.unparse(node)[:90]}")
    return problems


def test_no_module_edits_another_objects_private_fields() -> None:
    problems = [p for path in LIBRARY for p in foreign_private_edits(path)]
    assert not problems, "edits through another object's private attribute:\n" + "\n".join(problems)


@pytest.mark.parametrize("lower", ["internal", "pkg"])
def test_lower_layers_never_import_upper_ones(lower: str) -> None:
    allowed = {"internal", "pkg", "errors", "_sys"}
    problems = []
    for path in sorted((PACKAGE / lower).rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                depth = len(path.relative_to(PACKAGE).parts) - 1  # 1 inside reactor/internal
                if node.level > depth:
                    top = (node.module or "").split(".")[0]
                    names = [a.name for a in node.names] if not top else [top]
                    for name in names:
                        if name not in allowed:
                            problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
                mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                if mod and mod.startswith("reactor.") and mod.split(".")[1] not in allowed:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not problems, "\n".join(problems)


def test_the_rule_catches_an_edit() -> None:
    """The checker itself must be able to fail: three edits, one allowed read, one own field."""
    source = (
        "def f(c):\n"
        "    c._opened = True\n"
        "    c._outbound.push(b'x')\n"
        "    c._fail(None)\n"
        "    return c._opened\n"
        "class K:\n"
        "    def g(self):\n"
        "        self._x = 1\n"
    )
    problems = foreign_private_edits_in(source, "probe.py")
    assert [p.split(":")[1] for p in problems] == ["2", "3", "4"], problems
