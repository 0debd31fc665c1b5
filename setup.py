"""The compiled parts of diffimg (the rest is declared in pyproject.toml): built by `pip install`
with the machine's C compiler and Python headers. The NTFS reader needs libntfs-3g's headers
(Debian package ntfs-3g-dev) and xxhash's (libxxhash-dev), which `make deps` installs; without
them it is not built, and an NTFS partition is read through ntfs-3g's mount (windows/volume.py)."""

import os

from setuptools import Extension, setup

STRICT = ["-O2", "-Wall", "-Werror"]
extensions = [Extension("diffimg.scan._folder", ["diffimg/scan/_folder.c"], extra_compile_args=STRICT)]
if os.path.exists("/usr/include/ntfs-3g/volume.h") and os.path.exists("/usr/include/xxhash.h"):
    # (HAVE_* as the library was built: its headers include what these say exists)
    extensions.append(Extension(
        "diffimg.windows._ntfsvol", ["diffimg/windows/_ntfsvol.c"], libraries=["ntfs-3g"],
        define_macros=[
            ("HAVE_STDINT_H", "1"), ("HAVE_STDLIB_H", "1"), ("HAVE_STRING_H", "1"),
            ("HAVE_ERRNO_H", "1"), ("HAVE_SYS_TYPES_H", "1"), ("HAVE_STDIO_H", "1"),
            ("HAVE_SYS_STAT_H", "1"), ("HAVE_TIME_H", "1"), ("HAVE_STDARG_H", "1"),
            ("HAVE_LIMITS_H", "1"), ("HAVE_UNISTD_H", "1")],
        extra_compile_args=STRICT))
setup(ext_modules=extensions)
