"""The compiled parts of diffimg (the rest is declared in pyproject.toml): built by `pip install`
with the machine's C compiler and Python headers. The NTFS reader and writer need libntfs-3g's headers
(Debian package ntfs-3g-dev) and xxhash's (libxxhash-dev), which `make deps` installs; without
them it is not built, and an NTFS partition is read through ntfs-3g's mount (partition.ntfs_volume_of)."""

import os

from setuptools import Extension, setup

STRICT = ["-O2", "-Wall", "-Werror"]
extensions = [Extension("diffimg.scan._folder", ["diffimg/scan/_folder.c"], extra_compile_args=STRICT)]
if os.path.exists("/usr/include/ntfs-3g/volume.h") and os.path.exists("/usr/include/xxhash.h"):
    extensions.append(Extension("diffimg.windows._ntfsvol",
                                ["diffimg/windows/_ntfsvol.c", "diffimg/windows/_ntfswrite.c"],
                                depends=["diffimg/windows/_ntfsvol.h"],
                                libraries=["ntfs-3g"], extra_compile_args=STRICT))
setup(ext_modules=extensions)
