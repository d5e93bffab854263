"""pytest-httpserver's documented examples, ported to reactor: each one a test of its own.

The examples are written once, in docs/testing.md ("pytest-httpserver's
examples, ported": the ``# test_doc_httpserver_*.py`` blocks).
tests/unit/test_pytest_plugin.py::test_docs_examples runs those blocks as the
files a reader would copy; this module executes each block and collects its
``test_*`` functions here, under their own names, so that the comparison
table in docs/testing.md can name them and a failure names the example. The
code is compiled with docs/testing.md as its file name and its own line
numbers: a traceback points into the page.
"""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
PREFIX = "test_doc_httpserver_"


def howto_blocks() -> dict[str, tuple[int, str]]:
    """``{file name: (line of the code's first line in docs/testing.md, code)}`` of the ported examples."""
    text = DOCS.read_text()
    found = {}
    for m in re.finditer(r"```python\n(# (test_\w+)\.py\n)(.*?)```", text, flags=re.DOTALL):
        if m.group(2).startswith(PREFIX):
            first_line = text.count("\n", 0, m.start(3)) + 1
            found[m.group(2)] = (first_line, m.group(3))
    return found


def _collect() -> dict[str, Any]:
    tests: dict[str, Any] = {}
    for name, (first_line, code) in howto_blocks().items():
        module = types.ModuleType(f"docs_{name}")
        module.__file__ = str(DOCS)
        exec(compile("\n" * (first_line - 1) + code, str(DOCS), "exec"), module.__dict__)
        for attr, obj in vars(module).items():
            if attr.startswith("test_") and callable(obj):
                assert attr not in tests, f"two ported examples are named {attr} ({name})"
                tests[attr] = obj
    return tests


HOWTO_TESTS = _collect()
assert len(HOWTO_TESTS) >= 40, sorted(HOWTO_TESTS)
globals().update(HOWTO_TESTS)
