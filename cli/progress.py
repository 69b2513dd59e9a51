"""`pipeline run`'s terminal: one line per step with its wall time, while kfp.local's own output (every
task's log and executor JSON, thousands of lines) goes to a log file whose path is printed."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local's public log lines around each task (kfp.local.task_dispatcher, orchestrator). kfp puts
# conditions on its own groups only, so a step of ours is skipped only when an upstream step failed.
STARTED = re.compile(r"Executing task '([\w-]+)'")
ENDED = re.compile(r"Task '([\w-]+)' finished with status (\w+)")
SKIPPED = re.compile(r"Skipping (conditional )?task '?([\w-]+)'?")
# The groups kfp names itself (an If, an If/Elif chain, a ParallelFor): a skipped one is no step of ours.
GROUP = re.compile(r"(condition|condition-branches|for-loop)-\d+")
TAIL = 200  # lines of a failed task's log shown on the terminal: its traceback, and why


class StepLog(io.TextIOBase):
    """A text stream for kfp.local's output: everything to `file`, a line per step to `terminal`."""

    def __init__(self, file, terminal) -> None:
        self.file, self.terminal = file, terminal
        self.partial = ""
        self.started: dict[str, float] = {}
        self.tail: deque[str] = deque(maxlen=TAIL)
        self.failed: str | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.file.write(text)
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            self._line(ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self.file.flush()

    def _line(self, line: str) -> None:
        if m := STARTED.search(line):
            self.started[m.group(1)] = time.monotonic()
            self.tail.clear()
        elif m := ENDED.search(line):
            name, status = m.groups()
            seconds = time.monotonic() - self.started.get(name, time.monotonic())
            self._say(f"  {name:<24} {status.lower():<8} {seconds:7.1f} s")
            if status != "SUCCESS":
                self.failed = name
        elif (m := SKIPPED.search(line)) and not GROUP.fullmatch(m.group(2)):
            why = "its condition is false" if m.group(1) else "an upstream step failed"
            self._say(f"  {m.group(2):<24} skipped ({why})")
        elif line.strip():
            self.tail.append(line)

    def _say(self, line: str) -> None:
        print(line, file=self.terminal, flush=True)


@contextlib.contextmanager
def steps(log_path: Path) -> Iterator[StepLog]:
    """Within the block, sys.stdout, sys.stderr (warnings) and the terminal's log handlers write to a
    StepLog on `log_path`; on a failed step, its last lines are shown on the terminal."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    terminal = sys.stdout
    print(f"Pipeline steps (full log: {log_path}):", flush=True)
    # kfp.local logs through the root logger's handlers, which hold the terminal's streams themselves.
    handlers = [
        h
        for h in logging.getLogger().handlers
        if type(h) is logging.StreamHandler and h.stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    ]
    with log_path.open("w") as file:
        stream = StepLog(file, terminal)
        before = [h.setStream(stream) for h in handlers]
        try:
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                yield stream
        finally:
            for h, old in zip(handlers, before):
                h.setStream(old)
            if stream.failed and stream.tail:
                print(f"\nThe last lines of step {stream.failed!r}'s log:", file=terminal)
                print("\n".join(f"  {line}" for line in stream.tail), file=terminal, flush=True)
