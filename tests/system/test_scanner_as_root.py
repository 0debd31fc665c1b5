"""The scanner where root is needed: a mount point inside the tree (tmpfs), and root without
its file-access capabilities refused a mode-000 file."""

import os
import subprocess

import pytest
from conftest import assert_one_line_error, run_cli

from diffimg.entry import Kind
from diffimg.scan.scanner import scan


@pytest.mark.root
def test_scan_stays_on_one_filesystem(tmp_path):
    tree = tmp_path / "t"
    (tree / "mnt").mkdir(parents=True)
    (tree / "file").write_text("here")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", tree / "mnt"], check=True)
    try:
        (tree / "mnt" / "elsewhere").write_text("other fs")
        warnings = []
        entries = {e.path: e for e in scan(tree, on_warning=warnings.append)}
    finally:
        subprocess.run(["umount", tree / "mnt"], check=True)
    assert b"mnt" in entries and entries[b"mnt"].kind is Kind.DIR
    assert b"mnt/elsewhere" not in entries and b"file" in entries
    assert any("mount point" in w and "mnt" in w for w in warnings)


@pytest.mark.root("to drop its file-access capabilities")
def test_an_unreadable_file_is_an_error_naming_it(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "ok").write_text("fine")
    (tree / "secret").write_text("no")
    os.chmod(tree / "secret", 0)
    out = tmp_path / "out"
    out.mkdir()
    # root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH is refused a mode-000 file
    no_dac = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    proc = run_cli("scan", tree, "-o", out / "m", prefix=no_dac)
    assert_one_line_error(proc, 6)
    assert b"secret" in proc.stderr
    assert os.listdir(out) == []
