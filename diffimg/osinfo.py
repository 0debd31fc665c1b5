"""What operating system a tree holds, for an image's info."""

import os


def detect(root) -> dict:
    root = os.fsencode(root)
    for kernel in (b"Windows/System32/ntoskrnl.exe", b"WINDOWS/system32/ntoskrnl.exe"):
        if os.path.isfile(os.path.join(root, kernel)):
            return {"family": "windows", "evidence": os.fsdecode(kernel)}
    try:
        with open(os.path.join(root, b"etc/os-release"), "rb") as f:
            fields = dict(_os_release(f.read().decode("utf-8", "replace")))
        return {"family": "linux", "id": fields.get("ID", ""), "version": fields.get("VERSION_ID", ""),
                "name": fields.get("PRETTY_NAME", fields.get("NAME", ""))}
    except OSError:
        pass
    return {"family": "unknown"}


def _os_release(text: str):
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            yield key.strip(), value.strip().strip('"').strip("'")
