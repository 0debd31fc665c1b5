"""What a run of diffimg must not leave behind, for the tests that kill it or give it volumes:
processes, mounts, loop devices, run folders and temporary files."""

import os
import subprocess
import sys
import time


def diffimg_mounts() -> list[str]:
    """The lines of this machine's mount table that name diffimg (its run folders' mounts)."""
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if "diffimg" in line]


def mounts() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def nothing_left_on(*volumes):
    """None of the volume files is mounted (ntfs-3g shows the file as the mount's source) or
    attached to a loop device any more."""
    for volume in volumes:
        assert str(volume) not in mounts()
        attached = subprocess.run(["losetup", "-j", str(volume)], capture_output=True, text=True)
        assert attached.stdout.strip() == "", attached.stdout


def processes_marked(mark: bytes) -> list[str]:
    """Live processes (not zombies) whose environment holds mark: a run's children inherit it."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if mark in f.read():
                    with open(f"/proc/{pid}/cmdline", "rb") as c:
                        found.append(f"{pid}: {c.read()[:120]!r}")
        except OSError:
            continue
    return found


def killed(args, delay, mark):
    """Start the CLI with args, kill -9 it after delay seconds (if it still runs); its pid."""
    env = dict(os.environ, DIFFIMG_TEST_MARK=mark.decode())
    proc = subprocess.Popen([sys.executable, "-m", "diffimg", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    return proc.pid


def assert_nothing_left(pid, mark, folders, allowed):
    """After the next run: no marked process, no mount or run folder of pid, no loop device on
    a file in folders, nothing in folders but allowed names."""
    deadline = time.monotonic() + 10
    while processes_marked(mark) and time.monotonic() < deadline:
        time.sleep(0.2)                  # workers notice their parent's death asynchronously
    assert not processes_marked(mark)
    run_folder = f"diffimg-run-{pid}-".encode()
    with open("/proc/self/mountinfo", "rb") as f:
        assert not [line for line in f if run_folder in line]
    assert not [n for n in os.listdir("/tmp") if n.startswith(run_folder.decode())]
    loops = subprocess.run(["losetup", "-a"], capture_output=True).stdout
    for folder in folders:
        assert os.fsencode(folder) not in loops, loops
        assert set(os.listdir(folder)) <= allowed, os.listdir(folder)
