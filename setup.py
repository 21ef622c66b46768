"""Build the compiled core (``readtax._native``); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "readtax._native",
            ["src/readtax/_native.c"],
            extra_compile_args=["-O3", "-std=c11"],
        )
    ]
)
