"""Only job: hand the CFFI builder to setuptools (the route the cffi docs prescribe).

All project metadata lives in pyproject.toml; cffi has no declarative
pyproject.toml hook yet (cffi issue #55), so ``cffi_modules`` must be passed here.
"""

from setuptools import setup

setup(cffi_modules=["build_ffi.py:ffibuilder"])
