"""Build the compiled core (``readtax._native``); everything else is in pyproject.toml."""

from pathlib import Path

from setuptools import Extension, setup

CSRC = Path("src/readtax/csrc")

setup(
    ext_modules=[
        Extension(
            "readtax._native",
            sorted(str(p) for p in CSRC.glob("*.c")),
            depends=sorted(str(p) for p in CSRC.glob("*.h")),
            extra_compile_args=["-O3", "-std=c11", "-fvisibility=hidden"],
        )
    ]
)
