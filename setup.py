"""The compiled part of diffimg (the rest is declared in pyproject.toml): built by `pip install`
with the machine's C compiler and Python headers."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("diffimg._folder", ["diffimg/_folder.c"],
                             extra_compile_args=["-O2", "-Wall", "-Werror"])])
