"""Terminal front end of a job: a one-line progress bar with rate and ETA, and log lines, on stderr."""
from __future__ import annotations

import sys
from typing import Any, TextIO

from core.jobs import Job, Progress, format_duration


class ProgressBar:
    """A `Job` progress listener that draws `stage [#####.....] 50/100 12.3/s ETA 00:04 message` on stderr.

    On a TTY it redraws one line; elsewhere (CI, pipes) it prints a line at most every 10% of a stage.
    The rate and the ETA count only the work done since the current stage began.
    """

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 28):
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self._last = ("", -1)

    def __call__(self, progress: Progress) -> None:
        line = self.render(progress)
        if self.tty:
            self.stream.write("\r" + line.ljust(100)[:160])
            if progress.done >= progress.total:
                self.stream.write("\n")
        else:
            key = (progress.stage, int(progress.fraction * 10))
            if key == self._last:
                return
            self._last = key
            self.stream.write(line + "\n")
        self.stream.flush()

    def render(self, progress: Progress) -> str:
        filled = int(round(progress.fraction * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        rate = progress.stage_done / progress.stage_elapsed if progress.stage_elapsed > 0 else 0.0
        label = f"{self.label} {progress.stage}" if progress.stage else self.label
        text = (f"{label} [{bar}] {progress.done}/{progress.total} "
                f"{rate:.1f}/s ETA {format_duration(progress.eta_seconds)}")
        return f"{text} {progress.message}" if progress.message else text

    def log(self, text: str) -> None:
        self.stream.write(("\n" if self.tty else "") + text + "\n")
        self.stream.flush()


def terminal_job(label: str, min_interval: float = 0.1, progress: bool = True) -> Job:
    """A Job whose progress goes to a ProgressBar and whose "log" events are printed."""
    bar = ProgressBar(label)

    def on_event(kind: str, payload: Any) -> None:
        if kind == "log":
            bar.log(str(payload))

    return Job(bar if progress else None, min_interval=min_interval, on_event=on_event)
