"""Compile the C programs of the suite (bench/c/*.c) into bench/.build/ (git-ignored).

Rebuilt only when the source is newer than the binary, so the suite can call
:func:`build_all` on every start.  ``-O2`` and no exotic flags: the C peer
stands for "a straightforward C epoll server", not a tuned one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "c"
BUILD = HERE / ".build"
PROGRAMS = ("epoll_server", "echo_load")
CFLAGS = ["-O2", "-Wall", "-Wextra", "-std=gnu11"]


def build(name: str) -> Path:
    """Compile ``bench/c/<name>.c`` if needed; return the binary's path."""
    src = SRC / f"{name}.c"
    out = BUILD / name
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("gcc not found: the C peer and the echo load generator need a C compiler")
    BUILD.mkdir(exist_ok=True)
    tmp = out.with_suffix(".tmp")
    r = subprocess.run([gcc, *CFLAGS, "-o", str(tmp), str(src)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"compiling {src} failed:\n{r.stderr}")
    tmp.replace(out)  # atomic: a half-written binary is never run
    return out


def build_all() -> dict[str, Path]:
    """Build every program; ``{name: path}``."""
    return {name: build(name) for name in PROGRAMS}


if __name__ == "__main__":
    for name, path in build_all().items():
        print(f"{name}: {path}")
