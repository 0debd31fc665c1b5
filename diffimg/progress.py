"""Progress on stderr for the CLI. Library code only calls the callbacks it is given:
on_progress(count, bytes), on_warning(message) and on_phase(Phase, detail, total=None)."""

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
    PACKING = ("packing", "packing")                    # detail: format, from what
    COPYING = ("copying the content to store", "copying")
    CHECKING = ("checking what the image holds", "checking")
    WRITING_METADATA = ("writing the image's metadata",)
    # verify
    VERIFYING = ("checking the stored content of", "checking")
    # restore and apply
    READING_IMAGES = ("reading the images",)
    SCANNING_TARGET = ("scanning the target",)
    CHECKING_TARGET = ("checking the target",)
    MOUNTING = ("mounting images",)
    RESCUING = ("keeping content that moves",)
    FETCHING = ("fetching what the target lacks", "fetching")     # from a web server
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


# --progress: plain lines wherever stderr goes (set by the CLI before a command runs)
PLAIN = False


def set_plain(value: bool):
    global PLAIN
    PLAIN = bool(value)


class ProgressLine:
    """Progress on stderr: one self-rewriting line when stderr is a terminal; with plain
    (--progress), whole lines every PLAIN_INTERVAL seconds wherever stderr goes (an imaging
    server's web console); nothing when quiet. Where the step's total is known (phase(...,
    total=(count, bytes))), it shows the percent done, the rate and the time left."""

    INTERVAL = 0.2
    PLAIN_INTERVAL = 2.0

    def __init__(self, label: str, quiet: bool = False, unit: str = "entries",
                 plain: bool | None = None, warnings: bool | None = None):
        self.label = label
        self.unit = unit
        self.quiet = quiet
        # warnings print unless quiet; --json silences progress, never its warnings (stderr)
        self.warnings = not quiet if warnings is None else warnings
        self.terminal = not quiet and sys.stderr.isatty()
        self.plain = not quiet and (PLAIN if plain is None else plain) and not self.terminal
        self.enabled = self.terminal or self.plain
        self._last = 0.0
        self._drawn = False
        self._total: tuple[int, int] | None = None
        self._started = time.monotonic()

    def __call__(self, count: int, nbytes: int):
        """count entries (or files) and nbytes so far; redrawn at most every INTERVAL."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < (self.PLAIN_INTERVAL if self.plain else self.INTERVAL):
            return
        self._last = now
        text = self.text(count, nbytes, now)
        if self.plain:
            print(f"diffimg: {text}", file=sys.stderr, flush=True)
            return
        sys.stderr.write(f"\r\x1b[K{text}")
        sys.stderr.flush()
        self._drawn = True

    def text(self, count: int, nbytes: int, now: float) -> str:
        if self._total is None:
            return f"{self.label}: {count:,} {self.unit}, {human_bytes(nbytes)}"
        files, total = self._total
        elapsed = now - self._started
        rate = nbytes / elapsed if elapsed > 0 else 0
        done = min(nbytes / total, 1.0) if total else min(count / files, 1.0) if files else 1.0
        left = (total - nbytes) / rate if rate > 0 and total > nbytes else None
        return (f"{self.label}: {count:,}/{files:,} {self.unit}, {human_bytes(nbytes)}/"
                f"{human_bytes(total)} ({done:.0%}), {human_bytes(rate)}/s"
                + (f", {_duration(left)} left" if left is not None else ""))

    def clear(self):
        if self._drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._drawn = False

    def phase(self, phase: Phase, detail: str | None = None, total: tuple | None = None):
        """A new step: say so (unless quiet); from now on the line counts what the step counts,
        out of total (files, bytes) when it is known."""
        self.clear()
        if phase.counts is not None:
            self.label, self.unit = phase.counts, "files"
        self._total = total
        self._started = time.monotonic()
        self._last = 0.0
        if self.enabled:
            print(f"diffimg: {phase.text}" + (f" {detail}" if detail else "")
                  + (f" ({total[0]:,} files, {human_bytes(total[1])})" if total else ""),
                  file=sys.stderr, flush=True)

    def warn(self, message: str):
        """A warning: on stderr, unless quiet (which prints nothing but errors)."""
        self.clear()
        if self.warnings:
            print(f"diffimg: warning: {message}", file=sys.stderr)


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
