"""Small helpers shared by the CLI modules: JSON output, refusal reporting, exit codes, and the one way untrusted
text reaches a human-readable output (:func:`safe`)."""

from __future__ import annotations

import re
import sys
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from axis.reasons import Refusal

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

# emoji=False: ":warning:" in a subject stays text (rich.markup.escape does not cover emoji codes)
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

# Characters a terminal acts upon: C0 controls (ESC starts CSI/OSC sequences such as OSC-8 hyperlinks, CR overwrites
# the line, BEL ends an OSC), DEL, the C1 controls (U+009B is a one-character CSI, U+009D an OSC; XML 1.0 can
# carry them) and the Unicode bidirectional overrides and line separators (text that reads differently than it is).
_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_UNSAFE_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def _visible(m: re.Match[str]) -> str:
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def plain(value: object, *, lines: bool = False) -> str:
    """``value`` as text a terminal only displays: a tab becomes a space, every other control character a visible
    escape (ESC -> ``\\x1b``, CR -> ``\\r``, U+009B -> ``\\x9b``); newlines too unless ``lines``. None -> ""."""
    if value is None:
        return ""
    text = (value if isinstance(value, str) else str(value)).replace("\t", " ")
    return (_UNSAFE_LINES if lines else _UNSAFE).sub(_visible, text)


def safe(value: object, *, lines: bool = False) -> str:
    """Untrusted text for Rich markup: :func:`plain`, then markup-escaped, so that a subject ``[/]`` prints as
    ``[/]`` (instead of crashing the command) and ``[link=…]`` as itself (instead of a hyperlink).

    Everything a document, a server's answer, a file name, a certificate or an exception message supplies goes
    through here before it is interpolated into a ``console.print`` string or given to a Rich table or panel.
    """
    return escape(plain(value, lines=lines))


def print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, default=str).decode() + "\n")
    sys.stdout.flush()


def fail(refusal: Refusal, *, as_json: bool, extra: dict[str, Any] | None = None) -> NoReturn:
    """Report a refusal (JSON on stdout or a red line on stderr) and exit 1."""
    if as_json:
        print_json({**refusal.as_dict(), **(extra or {})})
    else:
        err_console.print(f"[bold red]refused[/] {safe(refusal.reason.value)}: {safe(refusal.detail)}")
    raise typer.Exit(EXIT_REFUSED)


def usage_error(message: str) -> NoReturn:
    """Print ``message`` (plain text, never markup: it may quote a file name or a server's answer) and exit 2."""
    err_console.print(f"[bold red]error:[/] {safe(message, lines=True)}")
    raise typer.Exit(EXIT_USAGE)
