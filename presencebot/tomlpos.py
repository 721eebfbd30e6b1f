"""Find the line of a key path in a TOML document, so config errors can say where they are.

``tomllib`` returns plain dicts without positions, and pydantic reports locations as key paths
such as ``("networks", 0, "rooms", 1, "audience")``. This module scans the text once and maps each
path it can see (table headers, arrays of tables, ``key = value`` lines, dotted keys) to its line.
It is deliberately approximate: anything it cannot place falls back to its nearest parent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Path = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*'))*)\s*="""
)
_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*'""")


def _split_key(dotted: str) -> list[str]:
    return [p.strip("\"'") for p in _PART.findall(dotted)]


def key_lines(text: str) -> dict[Path, int]:
    """Map every key path visible in ``text`` to its 1-based line number."""
    lines: dict[Path, int] = {}
    aot_index: dict[Path, int] = {}  # array-of-tables path (as written) -> current index
    table: Path = ()
    depth = 0  # open brackets/braces of a multi-line value
    in_string: str | None = None  # the delimiter of an open multi-line string
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw
        if in_string is not None:
            if in_string in line:
                in_string = None
            continue
        if depth == 0:
            header = _HEADER.match(line)
            if header:
                table = _resolve(_split_key(header.group(2)), aot_index, header.group(1) == "[[")
                lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                path = table + tuple(_split_key(key.group(1)))
                for cut in range(len(table) + 1, len(path) + 1):
                    lines.setdefault(path[:cut], number)
                line = line[key.end() :]
        for delim in ('"""', "'''"):
            if line.count(delim) % 2 == 1:
                in_string = delim
                line = line.split(delim, 1)[0]
        stripped = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', "", line).split("#", 1)[0]
        depth = max(0, depth + stripped.count("[") + stripped.count("{"))
        depth = max(0, depth - stripped.count("]") - stripped.count("}"))
    return lines


def _resolve(parts: Sequence[str], aot_index: dict[Path, int], is_array: bool) -> Path:
    """Turn a header such as ``networks.rooms`` into ``("networks", 0, "rooms", 2)``."""
    resolved: list[str | int] = []
    written: list[str] = []
    for i, part in enumerate(parts):
        written.append(part)
        resolved.append(part)
        key = tuple(written)
        last = i == len(parts) - 1
        if last and is_array:
            aot_index[key] = aot_index.get(key, -1) + 1
            # A new element starts fresh sub-arrays: forget indices of deeper arrays.
            for other in [k for k in aot_index if len(k) > len(key) and k[: len(key)] == key]:
                del aot_index[other]
            resolved.append(aot_index[key])
        elif key in aot_index:
            resolved.append(aot_index[key])
    return tuple(resolved)


def locate(path: Sequence[str | int], lines: dict[Path, int]) -> int | None:
    """The line of ``path``, or of its nearest ancestor the scan could place."""
    candidate: Path = tuple(path)
    while candidate:
        if candidate in lines:
            return lines[candidate]
        candidate = candidate[:-1]
    return None
