"""Trees deeper than Python's stack and than PATH_MAX: made into images and restored whole."""

import os

import pytest
from conftest import run_cli


def deep_tree(root, depth: int):
    """depth folders a/a/a/..., a file at the bottom; made through relative paths (the whole
    path may be longer than the kernel takes)."""
    os.mkdir(root)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fd)
            below = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(b"at the bottom\n")
    finally:
        os.close(fd)
    return root


def remove_deep(root):
    """Remove what deep_tree made (a restored copy too), one level at a time: pytest's own
    cleanup recurses per level."""
    a, lifted = os.path.join(root, "a"), os.path.join(root, "lifted")
    while os.path.isdir(a):
        below = os.path.join(a, "a")
        if os.path.isdir(below):
            os.rename(below, lifted)            # the chain one level shorter
        for name in os.listdir(a):
            os.unlink(os.path.join(a, name))
        os.rmdir(a)
        if os.path.isdir(lifted):
            os.rename(lifted, a)


def round_trip(tmp_path, depth: int, fmt: str):
    tree, out = tmp_path / "tree", tmp_path / "out"
    try:
        deep_tree(tree, depth)
        image = tmp_path / "deep.img"
        run_cli("create", tree, image, "--format", fmt, "-q", check_rc=0, timeout=300)
        run_cli("verify", image, check_rc=0, timeout=300)
        out.mkdir()
        run_cli("restore", image, out, "--yes", "-q", check_rc=0, timeout=300)
        run_cli("compare", tree, out, check_rc=0, timeout=300)      # exit 0: identical
    finally:
        for root in (tree, out, tmp_path / "deep.img" / "tree"):
            remove_deep(root)


def test_a_tree_1500_folders_deep_round_trips_in_a_folder_image(tmp_path):
    round_trip(tmp_path, 1500, "dir")


@pytest.mark.root
def test_a_tree_4300_folders_deep_round_trips_in_a_squashfs_image(tmp_path):
    """Deeper than PATH_MAX allows a path: squashfs holds it, and its tables are walked
    without recursion."""
    round_trip(tmp_path, 4300, "squashfs")
