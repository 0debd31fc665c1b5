"""The tools diffimg runs by name are found by a normal user too, whose PATH on Debian lacks
the sbin folders (blkid, sfdisk, losetup, mkfs.*)."""

import os
import subprocess
import sys


def test_the_sbin_folders_join_a_users_path_after_its_own():
    script = ("import os, shutil, diffimg.system.fsmeta\n"
              "print(os.environ['PATH']); print(shutil.which('blkid'))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env={**os.environ, "PATH": "/usr/bin:/bin"})
    path, blkid = done.stdout.splitlines()
    assert path == "/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
    assert blkid.endswith("/sbin/blkid")
