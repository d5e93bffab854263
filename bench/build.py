"""Compile the C programs of the suite (bench/c/*.c) into bench/.build/ (git-ignored).

Rebuilt only when the source is newer than the binary, so the suite can call
:func:`build_all` on every start.  ``-O2`` and no exotic flags: the C peer
stands for "a straightforward C epoll server", not a tuned one.

``tls_echo_load`` (echo_load.c built with ``-DECHO_TLS``, linked with
OpenSSL) is optional: without the OpenSSL headers (Debian: ``apt-get install
libssl-dev``) it is left out, and the TLS workloads are skipped with the
reason (:data:`MISSING`).  :func:`tls_files` makes the self-signed
certificate the TLS workloads' servers use, with the ``openssl`` command.
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
#: Optional programs: name -> (source stem, extra flags). Built when they can be.
OPTIONAL = {"tls_echo_load": ("echo_load", ["-DECHO_TLS", "-lssl", "-lcrypto"])}
#: Why an optional program (or the TLS certificate) is missing, once build_all/tls_files has tried.
MISSING: dict[str, str] = {}


def build(name: str, source: str | None = None, extra: list[str] | None = None) -> Path:
    """Compile ``bench/c/<source or name>.c`` if needed; return the binary's path."""
    src = SRC / f"{source or name}.c"
    out = BUILD / name
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("gcc not found: the C peer and the echo load generator need a C compiler")
    BUILD.mkdir(exist_ok=True)
    tmp = out.with_suffix(".tmp")
    r = subprocess.run([gcc, *CFLAGS, "-o", str(tmp), str(src), *(extra or [])], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"compiling {src} failed:\n{r.stderr}")
    tmp.replace(out)  # atomic: a half-written binary is never run
    return out


def build_all() -> dict[str, Path]:
    """Build every program, and the optional ones that can be (see :data:`MISSING`); ``{name: path}``."""
    built = {name: build(name) for name in PROGRAMS}
    for name, (source, extra) in OPTIONAL.items():
        try:
            built[name] = build(name, source, extra)
        except RuntimeError as e:
            MISSING[name] = f"{name} could not be built (OpenSSL headers? apt-get install libssl-dev): {e}"[:300]
    return built


def tls_files() -> tuple[Path, Path] | None:
    """``(cert.pem, key.pem)``: a self-signed ECDSA P-256 certificate for localhost and 127.0.0.1; None if impossible.

    Made once with the ``openssl`` command into bench/.build/tls/. Every TLS
    peer loads the same files into a context made the same way, so they
    negotiate the same protocol and cipher (TLS 1.3, the stdlib's defaults).
    """
    tls = BUILD / "tls"
    cert, key = tls / "cert.pem", tls / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        MISSING["tls"] = "the openssl command is not installed (apt-get install openssl)"
        return None
    tls.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "3650", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True, timeout=60,
    )
    if r.returncode != 0:
        MISSING["tls"] = f"openssl req failed: {r.stderr.strip()[-300:]}"
        return None
    return cert, key


if __name__ == "__main__":
    for name, path in build_all().items():
        print(f"{name}: {path}")
