"""What operating system a tree holds, for an image's info."""

import os


def detect(root) -> dict:
    root = os.fsencode(root)
    kernel = _windows_kernel(root)
    if kernel is not None:
        return {"family": "windows", "evidence": os.fsdecode(kernel)}
    try:
        with open(os.path.join(root, b"etc/os-release"), "rb") as f:
            fields = dict(_os_release(f.read().decode("utf-8", "replace")))
        return {"family": "linux", "id": fields.get("ID", ""), "version": fields.get("VERSION_ID", ""),
                "name": fields.get("PRETTY_NAME", fields.get("NAME", ""))}
    except OSError:
        pass
    return {"family": "unknown"}


def _windows_kernel(root: bytes) -> bytes | None:
    """The path of Windows/System32/ntoskrnl.exe in root, spelt in any case (Windows trees
    have WINDOWS/system32 too), or None; never through a symlink."""
    path = b""
    for wanted in (b"windows", b"system32", b"ntoskrnl.exe"):
        try:
            names = os.listdir(os.path.join(root, path) if path else root)
        except OSError:
            return None
        found = [n for n in names if n.lower() == wanted]
        if not found:
            return None
        path = os.path.join(path, found[0]) if path else found[0]
        if os.path.islink(os.path.join(root, path)):
            return None
    return path if os.path.isfile(os.path.join(root, path)) else None


def _os_release(text: str):
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            yield key.strip(), value.strip().strip('"').strip("'")
