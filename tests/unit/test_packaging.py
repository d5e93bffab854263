"""The distributions build and install (issue 14): ``python -m build``, then ``pip install`` each in a fresh venv.

The sdist used to lack ``build_ffi.py`` (``setup.py``'s ``cffi_modules``
names it, and setuptools does not pick it up by itself), so installing it
failed. This builds both distributions from a copy of the source tree (so
that nothing is written into the checkout), checks what they carry (the
builder, the LICENSE, the SPDX license, the one version), installs the
wheel and then the sdist into a new virtual environment, and imports the
compiled package from there. It takes about a minute: two isolated builds
(setuptools and cffi come from the package index) and two compilations.
Skipped, saying why, only when the build backend cannot be fetched.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from reactor._version import __version__

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 600
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.o", "_sys.c", ".mypy_cache",
    ".pytest_cache", ".ruff_cache", ".hypothesis", "site", ".build",
)
#: What pip says when the index cannot give it the build backend: then the test is skipped, not failed.
UNREACHABLE = re.compile(r"Could not find a version that satisfies|No matching distribution found|"
                         r"Failed to establish a new connection|Temporary failure in name resolution")


def sh(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                          check=False)


def checked(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    output = result.stdout + result.stderr
    if result.returncode != 0 and UNREACHABLE.search(output):
        pytest.skip(f"{what}: the build backend (setuptools, cffi) cannot be fetched from the package index")
    assert result.returncode == 0, f"{what} failed:\n{output[-5000:]}"
    return result


def test_sdist_and_wheel_build_and_install(tmp_path: Path) -> None:
    pytest.importorskip("build", reason="the 'build' package is not installed (pip install '.[test]')")
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    dist = tmp_path / "dist"
    checked(sh(sys.executable, "-m", "build", "--outdir", dist, src, cwd=tmp_path), "python -m build")
    (sdist,) = dist.glob("reactor_cffi-*.tar.gz")
    (wheel,) = dist.glob("reactor_cffi-*.whl")
    assert sdist.name == f"reactor_cffi-{__version__}.tar.gz"
    assert wheel.name.startswith(f"reactor_cffi-{__version__}-")

    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("build_ffi.py", "setup.py", "pyproject.toml", "LICENSE", "README.md", "reactor/__init__.py",
                   "reactor/_version.py", "reactor/py.typed"):
        assert needed in names, f"the sdist lacks {needed}"
    with zipfile.ZipFile(wheel) as whl:
        files = whl.namelist()
        (metadata,) = [n for n in files if n.endswith(".dist-info/METADATA")]
        meta = whl.read(metadata).decode()
    assert any(re.fullmatch(r"reactor/_sys\..*\.so", n) for n in files), "the wheel has no compiled reactor._sys"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in files), "the wheel lacks the LICENSE"
    assert "reactor/py.typed" in files and "reactor/_sys.pyi" in files
    assert f"\nVersion: {__version__}\n" in meta
    assert "\nLicense-Expression: MIT\n" in meta
    assert "Classifier: Framework :: Pytest" in meta

    venv = tmp_path / "venv"
    checked(sh(sys.executable, "-m", "venv", venv, cwd=tmp_path), "python -m venv")
    python = venv / "bin" / "python"
    probe = ("import reactor, reactor._sys, reactor.testing; "
             "print(reactor.__version__, reactor.__file__, reactor.serve.__module__)")
    for distribution in (wheel, sdist):
        checked(sh(python, "-m", "pip", "install", "--quiet", distribution, cwd=tmp_path),
                f"pip install {distribution.name}")
        out = checked(sh(python, "-c", probe, cwd=tmp_path), f"import after installing {distribution.name}").stdout
        version, where, module = out.split()
        assert version == __version__ and where.startswith(str(venv)) and module == "reactor.server", out
        cli = checked(sh(python, "-m", "reactor.examples.echo", "--version", cwd=tmp_path), "the echo example")
        assert __version__ in cli.stdout
        checked(sh(python, "-m", "pip", "uninstall", "--yes", "--quiet", "reactor-cffi", cwd=tmp_path),
                "pip uninstall")
