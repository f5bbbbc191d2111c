"""Terminal progress for the CLI: a one-line bar with rate and ETA, redrawn in place on a TTY."""
from __future__ import annotations

import sys
from typing import TextIO

from core.jobs import Progress, format_duration


class ProgressBar:
    """A `Job` listener that draws `[#####.....] 50/100 12.3/s ETA 00:04 message` on stderr.

    On a TTY it redraws one line; elsewhere (CI, pipes) it prints a line at most every 10%.
    """

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 28):
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self._last_decile = -1

    def __call__(self, progress: Progress) -> None:
        line = self.render(progress)
        if self.tty:
            self.stream.write("\r" + line.ljust(100)[:160])
            if progress.done >= progress.total:
                self.stream.write("\n")
        else:
            decile = int(progress.fraction * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(line + "\n")
        self.stream.flush()

    def render(self, progress: Progress) -> str:
        filled = int(round(progress.fraction * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        rate = progress.done / progress.elapsed if progress.elapsed > 0 else 0.0
        text = (f"{self.label} [{bar}] {progress.done}/{progress.total} "
                f"{rate:.1f}/s ETA {format_duration(progress.eta_seconds)}")
        return f"{text} {progress.message}" if progress.message else text
