# Type stub for the CFFI extension that build_ffi.py generates (reactor/_sys*.so).
# CFFI's ffi and lib objects are dynamic: their attributes are the C
# declarations in build_ffi.py's CDEF, which no static type describes.
from typing import Any

ffi: Any
lib: Any
