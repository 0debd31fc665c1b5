"""Progress on stderr for the CLI. Library code only calls the callbacks it is given:
on_progress(count, bytes), on_warning(message) and on_phase(Phase, detail)."""

import enum
import sys
import time


class Phase(enum.Enum):
    """A step of a long command, as it starts: what the CLI says, and what its progress line
    counts from then on (files under that label), if it counts files."""

    def __init__(self, text: str, counts: str | None = None):
        self.text = text
        self.counts = counts

    # making images
    RESTORING_PARTCLONE = ("restoring the partclone image into a temporary file",)
    SCANNING = ("scanning",)
    CLASSIFYING = ("scanning and classifying changes",)
    PACKING = ("packing",)                              # detail: format, from what
    COPYING = ("copying the content to store", "copying")
    CHECKING = ("checking what the image holds", "checking")
    WRITING_METADATA = ("writing the image's metadata",)
    # restore and apply
    READING_IMAGES = ("reading the images",)
    SCANNING_TARGET = ("scanning the target",)
    CHECKING_TARGET = ("checking the target",)
    MOUNTING = ("mounting images",)
    RESCUING = ("keeping content that moves",)
    DELETING = ("deleting",)
    MAKING_FOLDERS = ("making folders",)
    MAKING_SPECIALS = ("making symlinks and special files",)
    WRITING_FILES = ("writing files", "writing")
    LINKING = ("linking hardlinks",)
    SETTING_METADATA = ("setting metadata",)


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

    def phase(self, phase: Phase, detail: str | None = None):
        """A new step: say so (on a terminal, unless quiet); from now on the line counts what
        the step counts."""
        self.clear()
        if phase.counts is not None:
            self.label, self.unit = phase.counts, "files"
        if self.enabled:
            print(f"diffimg: {phase.text}" + (f" {detail}" if detail else ""), file=sys.stderr)

    def warn(self, message: str):
        self.clear()
        print(f"diffimg: warning: {message}", file=sys.stderr)
