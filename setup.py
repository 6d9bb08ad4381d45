"""Build of the C core only; metadata lives in pyproject.toml.

Switches (environment variables):
  TIEREDCACHE_DEBUG=1     -O0 -g3, assertions on (TC_DEBUG), structural checks in hot paths
  TIEREDCACHE_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer (implies -g)
"""

import os
from glob import glob

from setuptools import Extension, setup

debug = os.environ.get("TIEREDCACHE_DEBUG", "") not in ("", "0")
sanitize = os.environ.get("TIEREDCACHE_SANITIZE", "") not in ("", "0")

extra_compile_args = ["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"]
extra_link_args = []
define_macros = []
undef_macros = []

if debug:
    extra_compile_args += ["-O0", "-g3"]
    define_macros.append(("TC_DEBUG", "1"))
    undef_macros.append("NDEBUG")
else:
    extra_compile_args += ["-O2"]

if sanitize:
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined", "-g"]
    # Python's CFLAGS carry -fwrapv, which hides signed overflow from UBSan.
    extra_compile_args += flags + ["-fno-wrapv"]
    extra_link_args += flags

setup(
    ext_modules=[
        Extension(
            "tieredcache._core",
            sources=sorted(glob("csrc/*.c")),
            depends=sorted(glob("csrc/*.h")),
            include_dirs=["csrc"],
            define_macros=define_macros,
            undef_macros=undef_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        )
    ]
)
