"""Probe for issue 10 ("No staging copies"): pack the files of a folder into squashfs two ways,
side by side, and print both times and sizes.

1. staged, as `diff` does today: copy each file into a staging folder (its folders made as
   needed), then `mksquashfs STAGING OUT`;
2. streamed: write the files as one tar stream (PAX, so any name goes through) into
   `mksquashfs - OUT -tar`, hashing each file's bytes as they are sent (what would prove the
   container's content without reading it back through the kernel).

    python bench/probe_tar_stream.py SRC [WORKDIR]

Both use zstd level 9, as diffimg does. Root is not needed. WORKDIR (default a new folder in
/var/tmp) is removed at the end.
"""

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

import xxhash

MKSQUASHFS = ["mksquashfs", "-noappend", "-quiet", "-no-progress", "-comp", "zstd",
              "-Xcompression-level", "9"]


def files_of(src: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), src)
                  for d, _, names in os.walk(src) for f in names
                  if os.path.isfile(os.path.join(d, f)) and not os.path.islink(os.path.join(d, f)))


def staged(src: str, files: list[str], work: str) -> tuple[float, int]:
    start = time.perf_counter()
    staging = os.path.join(work, "staging")
    for rel in files:
        dst = os.path.join(staging, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(os.path.join(src, rel), dst)
    out = os.path.join(work, "staged.sq")
    subprocess.run([MKSQUASHFS[0], staging, out, *MKSQUASHFS[1:]], check=True)
    return time.perf_counter() - start, os.path.getsize(out)


def streamed(src: str, files: list[str], work: str) -> tuple[float, int]:
    start = time.perf_counter()
    out = os.path.join(work, "streamed.sq")
    proc = subprocess.Popen([MKSQUASHFS[0], "-", out, "-tar", *MKSQUASHFS[1:]],
                            stdin=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in files:
            with open(os.path.join(src, rel), "rb") as f:
                data = f.read()
            xxhash.xxh3_128_digest(data)
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("mksquashfs -tar failed")
    return time.perf_counter() - start, os.path.getsize(out)


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    src = sys.argv[1]
    work = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(dir="/var/tmp", prefix="probe-tar-")
    os.makedirs(work, exist_ok=True)
    try:
        files = files_of(src)
        total = sum(os.path.getsize(os.path.join(src, rel)) for rel in files)
        print(f"{len(files):,} files, {total:,} bytes, from {src}")
        for name, how in (("staged (copy + mksquashfs DIR)", staged),
                          ("streamed (tar into mksquashfs -tar)", streamed)):
            seconds, size = how(src, files, work)
            print(f"{name:38} {seconds:7.2f} s  {size:,} bytes")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
