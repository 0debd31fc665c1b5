"""What operating system a tree holds (system/osinfo.py), read from trees in tmp_path: os-release's
fields, its size bound, and never a symlink followed or a FIFO opened; Windows' kernel in any case,
its SOFTWARE and SYSTEM hives read by hivexget (when at hand) with their bounds, the same rules for
each path. No root: plain files, folders, symlinks and FIFOs."""

import os
import shutil
import threading

import pytest
from regf import REG_DWORD, REG_SZ, hive

from diffimg.system import osinfo
from diffimg.system.osinfo import MAX_OS_RELEASE, computer_name, detect, is_windows, read_beneath

needs_hivexget = pytest.mark.skipif(shutil.which("hivexget") is None, reason="needs hivexget")


def within(seconds, fn, *args):
    """fn(*args), which must return within seconds (a FIFO opened for reading would block)."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(value=fn(*args)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} still blocks after {seconds} s"
    return out["value"]


def release(root, text: bytes):
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "os-release").write_bytes(text)
    return root


def test_os_release_fields_are_read_as_os_release_5_writes_them(tmp_path):
    trees = {
        "debian": b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
                  b'VERSION_ID="12"\nID=debian\n# ID=commented\nHOME_URL="https://www.debian.org/"\n',
        "name only": b"NAME='Alpine Linux'\nID=alpine\nVERSION_ID=3.19.1\n",
        "spaced and junk": b"  ID = arch \nno equals sign here\n=orphan value\nBUILD_ID=rolling\n",
        "empty": b"",
        "not utf-8": b"ID=caf\xe9\nNAME=x\n",
    }
    found = {name: detect(release(tmp_path / name, text)) for name, text in trees.items()}
    assert found == {
        "debian": {"family": "linux", "id": "debian", "version": "12",
                   "name": "Debian GNU/Linux 12 (bookworm)"},
        "name only": {"family": "linux", "id": "alpine", "version": "3.19.1", "name": "Alpine Linux"},
        "spaced and junk": {"family": "linux", "id": "arch", "version": "", "name": ""},
        "empty": {"family": "linux", "id": "", "version": "", "name": ""},
        "not utf-8": {"family": "linux", "id": "caf\ufffd", "version": "", "name": "x"},
    }


def test_only_the_first_64_kib_of_os_release_are_read(tmp_path):
    text = b"ID=early\n" + b"#" * (MAX_OS_RELEASE + 100) + b"\nID=late\nVERSION_ID=beyond\n"
    root = release(tmp_path, text)
    read = read_beneath(os.fsencode(root), b"etc/os-release", MAX_OS_RELEASE)
    assert (len(read), read == text[:MAX_OS_RELEASE], detect(root)) == (
        MAX_OS_RELEASE, True, {"family": "linux", "id": "early", "version": "", "name": ""})


def _planted(root, how):
    outside = root.parent / f"outside-{how}"
    release(outside, b"ID=planted\n")
    etc = root / "etc"
    if how == "etc is a symlink":
        root.mkdir()
        etc.symlink_to(outside / "etc")
        return
    etc.mkdir(parents=True)
    target = etc / "os-release"
    if how == "a symlink out of the tree":
        target.symlink_to(outside / "etc" / "os-release")
    elif how == "a symlink within the tree":
        (root / "usr").mkdir()
        (root / "usr" / "os-release").write_bytes(b"ID=linked\n")
        target.symlink_to("../usr/os-release")
    elif how == "a symlink to /dev/zero":
        target.symlink_to("/dev/zero")
    elif how == "a FIFO":
        os.mkfifo(target)
    elif how == "a folder":
        target.mkdir()
    elif how == "a socket-like dangling link":
        target.symlink_to("nowhere")
    else:
        raise ValueError(how)


@pytest.mark.parametrize("how", ["etc is a symlink", "a symlink out of the tree", "a symlink within the tree",
                                 "a symlink to /dev/zero", "a FIFO", "a folder",
                                 "a socket-like dangling link"])
def test_os_release_that_is_not_a_regular_file_beneath_the_tree_is_not_read(tmp_path, how):
    root = tmp_path / "tree"
    _planted(root, how)
    assert (within(5, detect, root),
            within(5, read_beneath, os.fsencode(root), b"etc/os-release", 100)) == (
        {"family": "unknown"}, None)


def test_a_tree_whose_os_release_lies_in_usr_lib_is_linux(tmp_path):
    root = tmp_path / "tree"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "lib" / "os-release").write_bytes(b'ID=debian\nVERSION_ID="12"\nNAME="Debian"\n')
    (root / "etc").mkdir()
    (root / "etc" / "os-release").symlink_to("../usr/lib/os-release")
    assert detect(root) == {"family": "linux", "id": "debian", "version": "12", "name": "Debian"}


def _windows(root, spelling=("Windows", "System32", "ntoskrnl.exe")):
    windows, system32, kernel = spelling
    (root / windows / system32 / "config").mkdir(parents=True)
    (root / windows / system32 / kernel).write_bytes(b"MZ")
    return root / windows / system32 / "config"


def test_windows_is_told_by_its_kernel_in_any_case_never_through_a_symlink(tmp_path):
    found = {}
    for name, spelling in [("usual", ("Windows", "System32", "ntoskrnl.exe")),
                           ("old", ("WINDOWS", "system32", "NTOSKRNL.EXE")),
                           ("odd", ("wInDoWs", "SYSTEM32", "NtOsKrNl.ExE"))]:
        root = tmp_path / name
        _windows(root, spelling)
        release(root, b"ID=not-this\n")                    # the kernel comes first
        found[name] = (detect(root), is_windows(root))
    # the kernel, a folder above it or the tree's Windows reached through a symlink: not Windows
    real = tmp_path / "real"
    _windows(real)
    links = {"Windows a symlink": ("Windows", real / "Windows"),
             "System32 a symlink": ("Windows/System32", real / "Windows" / "System32"),
             "the kernel a symlink": ("Windows/System32/ntoskrnl.exe",
                                      real / "Windows" / "System32" / "ntoskrnl.exe")}
    for name, (rel, to) in links.items():
        root = tmp_path / name.replace(" ", "-")
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(to)
        found[name] = (detect(root), is_windows(root))
    fifo = tmp_path / "fifo"
    (fifo / "Windows" / "System32").mkdir(parents=True)
    os.mkfifo(fifo / "Windows" / "System32" / "ntoskrnl.exe")
    found["the kernel a FIFO"] = (within(5, detect, fifo), is_windows(fifo))
    unknown = ({"family": "unknown"}, False)
    assert found == {
        "usual": ({"family": "windows", "evidence": "Windows/System32/ntoskrnl.exe"}, True),
        "old": ({"family": "windows", "evidence": "WINDOWS/system32/NTOSKRNL.EXE"}, True),
        "odd": ({"family": "windows", "evidence": "wInDoWs/SYSTEM32/NtOsKrNl.ExE"}, True),
        "Windows a symlink": unknown, "System32 a symlink": unknown, "the kernel a symlink": unknown,
        "the kernel a FIFO": unknown}


VERSION = {"Microsoft": {"Windows NT": {"CurrentVersion": {
    "ProductName": (REG_SZ, "Windows 11 Pro"), "EditionID": (REG_SZ, "Professional"),
    "ReleaseId": (REG_SZ, "2009"), "DisplayVersion": (REG_SZ, "23H2"),
    "CurrentBuild": (REG_SZ, "22631"), "UBR": (REG_DWORD, 2861)}}}}


def _software(config, values, name="SOFTWARE"):
    (config / name).write_bytes(hive({"Microsoft": {"Windows NT": {"CurrentVersion": values}}}))


@needs_hivexget
def test_the_windows_version_comes_from_the_software_hive_plain_text_only(tmp_path):
    found = {}
    cases = {
        "full": VERSION["Microsoft"]["Windows NT"]["CurrentVersion"],
        "release id alone": {"ReleaseId": (REG_SZ, "1909"), "CurrentBuild": (REG_SZ, "18363")},
        "odd text is left out": {"ProductName": (REG_SZ, 'Windows "10" <Pro>'),
                                 "EditionID": (REG_SZ, "x" * 200), "ReleaseId": (REG_SZ, "y" * 201),
                                 "CurrentBuild": (REG_SZ, "19045\nforged"), "UBR": (REG_SZ, "12")},
        "nothing of it": {"Other": (REG_SZ, "value")},
    }
    for name, values in cases.items():
        root = tmp_path / name.replace(" ", "-")
        _software(_windows(root), values, name="software" if name == "release id alone" else "SOFTWARE")
        found[name] = detect(root)
    # a symlink spelt SOFTWARE beside the hive spelt software: the hive is read, never the link
    root = tmp_path / "beside"
    config = _windows(root)
    _software(config, cases["release id alone"], name="software")
    _software(tmp_path, cases["full"], name="elsewhere")
    (config / "SOFTWARE").symlink_to(tmp_path / "elsewhere")
    found["beside a symlink"] = detect(root)
    evidence = {"family": "windows", "evidence": "Windows/System32/ntoskrnl.exe"}
    assert found == {
        "full": {**evidence, "product": "Windows 11 Pro", "edition": "Professional", "version": "23H2",
                 "build": "22631.2861"},
        "release id alone": {**evidence, "version": "1909", "build": "18363"},
        "odd text is left out": {**evidence, "edition": "x" * 200},
        "nothing of it": evidence,
        "beside a symlink": {**evidence, "version": "1909", "build": "18363"},
    }


def _hive_planted(config, how, tmp_path):
    outside = tmp_path / "outside-hive"
    outside.write_bytes(hive(VERSION))
    if how == "a symlink":
        (config / "SOFTWARE").symlink_to(outside)
    elif how == "a FIFO":
        os.mkfifo(config / "SOFTWARE")
    elif how == "a folder":
        (config / "SOFTWARE").mkdir()
    elif how == "config a symlink":
        config.rmdir()
        outside_config = tmp_path / "outside-config"
        outside_config.mkdir()
        (outside_config / "SOFTWARE").write_bytes(hive(VERSION))
        config.symlink_to(outside_config)
    elif how == "junk":
        (config / "SOFTWARE").write_bytes(b"regf" + bytes(range(256)) * 30)
    elif how == "empty":
        (config / "SOFTWARE").write_bytes(b"")
    else:
        raise ValueError(how)


@needs_hivexget
@pytest.mark.parametrize("how", ["a symlink", "a FIFO", "a folder", "config a symlink", "junk", "empty"])
def test_a_hive_that_is_not_a_regular_readable_file_beneath_the_tree_says_nothing(tmp_path, how):
    root = tmp_path / "tree"
    _hive_planted(_windows(root), how, tmp_path)
    assert within(10, detect, root) == {"family": "windows", "evidence": "Windows/System32/ntoskrnl.exe"}


def _system(config, current, names: dict):
    tree = {f"ControlSet{n:03d}": {"Control": {"ComputerName": {"ComputerName": {
        "ComputerName": (REG_SZ, name)}}}} for n, name in names.items()}
    if current is not None:
        tree["Select"] = {"Current": current}
    (config / "SYSTEM").write_bytes(hive(tree))


@needs_hivexget
def test_the_computer_name_is_that_of_the_control_set_windows_boots_with(tmp_path):
    names = {1: "FIRST-PC", 2: "SECOND-PC", 3: "THIRD-PC"}
    found = {}
    for name, current in [("current 2", (REG_DWORD, 2)), ("current 3", (REG_DWORD, 3)),
                          ("no Select", None), ("current 0", (REG_DWORD, 0)),
                          ("current 5000", (REG_DWORD, 5000)), ("current as text", (REG_SZ, "2"))]:
        root = tmp_path / name.replace(" ", "-")
        _system(_windows(root), current, names)
        found[name] = computer_name(root)
    linux = release(tmp_path / "linux", b"ID=debian\n")
    bare = tmp_path / "bare"
    _windows(bare)
    found["not Windows"] = computer_name(linux)
    found["no SYSTEM hive"] = computer_name(bare)
    assert found == {"current 2": "SECOND-PC", "current 3": "THIRD-PC", "no Select": "FIRST-PC",
                     "current 0": "FIRST-PC", "current 5000": "FIRST-PC", "current as text": "SECOND-PC",
                     "not Windows": None, "no SYSTEM hive": None}


def test_open_beneath_gives_regular_files_only_and_raises_otherwise(tmp_path):
    root = tmp_path / "tree"
    _planted(root, "a symlink within the tree")
    (root / "plain").write_bytes(b"plain")
    results = {}
    for rel in [b"plain", b"usr/os-release", b"etc/os-release", b"etc", b"missing", b"etc/../plain"]:
        try:
            fd = osinfo.open_beneath(os.fsencode(root), rel)
        except OSError:
            results[rel] = "refused"
        else:
            with open(fd, "rb") as f:
                results[rel] = f.read()
    assert results == {b"plain": b"plain", b"usr/os-release": b"ID=linked\n", b"etc/os-release": "refused",
                       b"etc": "refused", b"missing": "refused", b"etc/../plain": "refused"}
