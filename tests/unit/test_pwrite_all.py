"""A write to a filling disk may take only part of the bytes: pwrite_all writes the rest or
fails, never leaving a short copy that looks written (fetch's copy then said 'damaged', exit 8,
where the disk was full, exit 7)."""

import subprocess
import sys

SCRIPT = """
import errno, os, resource, signal, sys
from diffimg.system.safefs import pwrite_all
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # a write past the limit: EFBIG, no signal
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
print(os.pwrite(fd, bytes(3000), 0))                 # the kernel takes what fits: 1000
try:
    pwrite_all(fd, bytes(3000), 0)
    print("written")
except OSError as exc:
    print(errno.errorcode[exc.errno])
"""


def test_a_write_cut_short_is_finished_or_fails(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "copy")], capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == ["1000", "EFBIG"]
