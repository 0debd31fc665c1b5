"""Progress on stderr for the CLI. Library code only calls the callbacks it is given."""

import sys
import time


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


class ProgressLine:
    """One self-rewriting stderr line, drawn only when stderr is a terminal and not quiet."""

    INTERVAL = 0.2

    def __init__(self, label: str, quiet: bool = False, unit: str = "entries"):
        self.label = label
        self.unit = unit
        self.enabled = not quiet and sys.stderr.isatty()
        self._last = 0.0
        self._drawn = False

    def __call__(self, count: int, nbytes: int):
        """count entries (or files) and nbytes so far; redrawn at most every INTERVAL."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.INTERVAL:
            return
        self._last = now
        sys.stderr.write(f"\r\x1b[K{self.label}: {count:,} {self.unit}, {human_bytes(nbytes)}")
        sys.stderr.flush()
        self._drawn = True

    def clear(self):
        if self._drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._drawn = False

    def phase(self, what: str, files_label: str | None = None):
        """A new step: say so (on a terminal, unless quiet); from now on, with files_label, the
        line counts files under that label."""
        self.clear()
        if files_label is not None:
            self.label, self.unit = files_label, "files"
        if self.enabled:
            print(f"diffimg: {what}", file=sys.stderr)

    def warn(self, message: str):
        self.clear()
        print(f"diffimg: warning: {message}", file=sys.stderr)
