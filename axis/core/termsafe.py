"""Untrusted text made inert for a terminal: :func:`plain` (control characters shown, never acted upon) and
:func:`safe` (that, and Rich markup escaped). The CLI and the simulator's report print every document field,
server answer, file name and error detail through these."""

from __future__ import annotations

import re

from rich.markup import escape

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
