"""Walking the parsed TOML of the console's config: each getter checks a key's type (and
range), and every problem is collected with the key it names instead of stopping at the first."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

from app.secrets import Secret

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a table"}


class Reader:
    """Walks the parsed TOML, collecting problems instead of stopping at the first."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data
        self.problems: list[str] = []

    def table(self, parent: dict[str, Any], key: str, where: str, required: bool) -> dict[str, Any]:
        value = parent.get(key)
        if value is None:
            if required:
                self.problems.append(f"[{where}] is missing: a table is required")
            return {}
        if not isinstance(value, dict):
            self.problems.append(f"{where}: expected a table, got {type(value).__name__}")
            return {}
        return value

    def known(self, table: dict[str, Any], where: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                self.problems.append(f"{where}.{key}: unknown key (known keys: {hint})")

    def get(self, table: dict[str, Any], key: str, where: str, kind: type,
            default: Any = None, required: bool = False) -> Any:
        if key not in table:
            if required:
                self.problems.append(f"{where}.{key} is missing: {_TYPE_NAMES[kind]} is required")
            return default
        value = table[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            self.problems.append(
                f"{where}.{key}: expected {_TYPE_NAMES[kind]}, got {type(value).__name__} "
                f"({value!r})" if not isinstance(value, dict | list) else
                f"{where}.{key}: expected {_TYPE_NAMES[kind]}, got {type(value).__name__}")
            return default
        return value

    def number(self, table: dict[str, Any], key: str, where: str, kind: type, default: Any,
               minimum: float = 0, inclusive: bool = False,
               maximum: float | None = None) -> Any:
        """A finite int or float above ``minimum`` (or at least it, when ``inclusive``) and at
        most ``maximum``; out of range is a problem naming the key, and the default is kept."""
        value = self.get(table, key, where, kind, default=default)
        if value is None or value is default:
            return value
        low_ok = value >= minimum if inclusive else value > minimum
        if not math.isfinite(value) or not low_ok or (maximum is not None and value > maximum):
            bound = f"at least {minimum:g}" if inclusive else f"above {minimum:g}"
            if maximum is not None:
                bound += f" and at most {maximum:.0f}"
            what = "an integer" if kind is int else "a number"
            self.problems.append(f"{where}.{key}: expected {what} {bound}, got {value!r}")
            return default
        return value

    def str_list(self, table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
        values = self.get(table, key, where, list, default=[])
        if not all(isinstance(v, str) for v in values):
            self.problems.append(f"{where}.{key}: expected a list of strings")
            return ()
        return tuple(values)

    def entries(self, table: dict[str, Any], key: str, where: str,
                keys: tuple[str, ...]) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each table of the list ``key`` with its place (``where.key[i]``), its keys checked
        against ``keys``; an item that is not a table is a problem and skipped."""
        for i, item in enumerate(self.get(table, key, where, list, default=[])):
            place = f"{where}.{key}[{i}]"
            if not isinstance(item, dict):
                self.problems.append(f"{place}: expected a table with {', '.join(keys)}")
                continue
            self.known(item, place, set(keys))
            yield place, item

    def secret(self, table: dict[str, Any], base: str, where: str,
               required: bool = False) -> Secret | None:
        """``base`` literal, ``base_env`` (variable name) or ``base_file`` (path to a file)."""
        given = [k for k in (base, f"{base}_env", f"{base}_file") if k in table]
        if len(given) > 1:
            self.problems.append(f"{where}: give only one of {', '.join(given)}")
            return None
        if not given:
            if required:
                self.problems.append(
                    f"{where}.{base} is missing: set {base}, {base}_env (an environment "
                    f"variable's name) or {base}_file")
            return None
        key = given[0]
        value = self.get(table, key, where, str)
        if value is None:
            return None
        if key.endswith("_env"):
            env_value = os.environ.get(value)
            if not env_value:
                self.problems.append(
                    f"{where}.{key}: environment variable {value} is not set (export it, or "
                    f"point {where}.{base}_file at a file holding the value)")
                return None
            return Secret(env_value)
        if key.endswith("_file"):
            file = self.resolve(value)
            try:
                return Secret(file.read_text(encoding="utf-8").strip())
            except OSError as exc:
                self.problems.append(f"{where}.{key}: cannot read {file}: {exc.strerror}")
                return None
        return Secret(value)

    def resolve(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.path.parent / p).resolve()


def dsn_problem(dsn: str) -> str | None:
    """What is wrong with a DSN's form (scheme, port), in words that never show its password;
    None when it can be connected to."""
    shape = "write it as postgresql://user@host:5432/database"
    try:
        parts = urlsplit(dsn)
    except ValueError as exc:   # an unclosed [ipv6] host
        return f"not a valid URL ({exc}): {shape}"
    if parts.scheme not in ("postgres", "postgresql"):
        return "expected a postgresql:// URL (postgresql://user@host:port/database)"
    host = parts.netloc.rpartition("@")[2]
    text = host.partition("]")[2] if host.startswith("[") else host
    text = text.rpartition(":")[2] if ":" in text else ""
    try:
        port = parts.port
    except ValueError:
        port = None
    if text and port is None and "," not in host:
        if not text.isdigit():
            return f"port {text!r} is not a number: {shape}"
        return f"port {text} is out of range (1-65535): {shape}"
    if port == 0:
        return f"port 0 is out of range (1-65535): {shape}"
    for given in parse_qs(parts.query).get("port", []):
        if not all(p.strip().isdigit() and 0 < int(p) < 65536 for p in given.split(",")):
            return f"port {given!r} (in ?port=) is not a number from 1 to 65535: {shape}"
    return None


def with_password(dsn: str, password: Secret | None) -> str:
    if password is None:
        return dsn
    parts = urlsplit(dsn)
    if parts.password:
        return dsn
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = quote(parts.username or "", safe="")
    netloc = f"{user}:{quote(password.reveal(), safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
