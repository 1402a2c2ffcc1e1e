"""One progress line for what ``axis up`` and ``axis demo`` wait for (the broker, the servers), with its deadline.

On a terminal the line is rewritten in place (at most five times a second) and ended with a newline by
:meth:`ProgressLine.done`; elsewhere (a log file, CI) a line is printed when the message's subject changes and
otherwise at most every ``every`` seconds, so a slow start is visible without flooding the log.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressLine:
    def __init__(self, stream: TextIO | None = None, *, every: float = 10.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self._last_at = 0.0
        self._subject = ""
        self._open = False  # a rewritten line is on the terminal, not ended yet

    def __call__(self, subject: str, detail: str = "") -> None:
        """Show ``subject`` (what is waited for) and ``detail`` (how long, the last error)."""
        now = time.monotonic()
        text = f"{subject} {detail}".strip()
        if self.tty:
            if now - self._last_at < 0.2 and subject == self._subject:
                return
            self.stream.write("\r\x1b[K" + text)
            self._open = True
        else:
            if subject == self._subject and now - self._last_at < self.every:
                return
            self.stream.write(text + "\n")
        self.stream.flush()
        self._subject, self._last_at = subject, now

    def done(self) -> None:
        """End the line (on a terminal); the next output starts on a fresh line."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
        self._subject = ""
