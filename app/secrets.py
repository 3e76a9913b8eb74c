"""Secrets (DSN passwords, tokens, webhooks) that must never reach a screen, log or traceback.

A ``Secret`` masks itself in ``repr``/``str`` (Textual's crash screen prints locals), and every
revealed value is remembered so the log processor can scrub it from anything it sees.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_known: set[str] = set()
_DSN_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]+)(@)")


class Secret:
    """A string that does not print. Use ``reveal()`` only where the value is handed to a client."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value
        remember(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def remember(value: str) -> None:
    """Register a secret value so ``scrub`` removes it wherever it appears."""
    if value and len(value) >= 4:
        _known.add(value)


def scrub(text: str) -> str:
    """Remove every known secret and any password embedded in a postgres URL from ``text``."""
    text = _DSN_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", text)
    for value in sorted(_known, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def display_dsn(dsn: str) -> str:
    """The DSN as it may be shown: the password replaced by the mask."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return scrub(dsn)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:{MASK}@{host}"
    return scrub(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))
