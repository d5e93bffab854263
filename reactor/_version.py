"""The one place the version is written; pyproject.toml and ``reactor.__version__`` read it.

A module of its own, without imports, so that setuptools reads it at build
time (``[tool.setuptools.dynamic]``) without importing ``reactor``, which
needs the compiled ``reactor._sys`` that the build is about to make.
"""

__version__ = "0.1.0"
