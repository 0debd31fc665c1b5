"""The compiled part of diffimg (the rest is declared in pyproject.toml): built by `pip install`
with the machine's C compiler and Python headers."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("diffimg.scan._folder", ["diffimg/scan/_folder.c"],
                             extra_compile_args=["-O2", "-Wall", "-Werror"])])
