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
    return [p[1:-1] if p[0] in "\"'" else p for p in _PART.findall(dotted)]


def key_lines(text: str) -> dict[Path, int]:
    """Map every key path visible in ``text`` to its 1-based line number.

    A table header also places its ancestors (``[[networks]]`` places ``("networks",)``), so an
    error about a whole array of tables, such as duplicate names, still gets a line.
    """
    lines: dict[Path, int] = {}
    aot_index: dict[Path, int] = {}  # array-of-tables path (as written) -> current index
    table: Path = ()
    depth = 0  # open brackets/braces of a multi-line value
    in_string: str | None = None  # the delimiter of an open multi-line string
    for number, line in enumerate(text.splitlines(), start=1):
        start = 0
        if depth == 0 and in_string is None:
            header = _HEADER.match(line)
            if header:
                table = _resolve(_split_key(header.group(2)), aot_index, header.group(1) == "[[")
                for cut in range(1, len(table) + 1):
                    lines.setdefault(table[:cut], number)
                continue
            key = _KEY.match(line)
            if key:
                path = table + tuple(_split_key(key.group(1)))
                for cut in range(len(table) + 1, len(path) + 1):
                    lines.setdefault(path[:cut], number)
                start = key.end()
        depth, in_string = _scan(line, start, depth, in_string)
    return lines


def _scan(line: str, pos: int, depth: int, in_string: str | None) -> tuple[int, str | None]:
    """Follow strings, comments and brackets through the value part of one line.

    Character by character rather than by counting, because a bracket or quote inside a string
    or comment, or text after the end of a multi-line string, must not shift the state that
    decides whether the next line can hold a key or a header.
    """
    end = len(line)
    while pos < end:
        char = line[pos]
        if in_string is not None:
            if char == "\\" and in_string[0] == '"':  # escapes exist only in basic strings
                pos += 2
            elif line.startswith(in_string, pos):
                pos += len(in_string)
                if len(in_string) == 3:  # `""""` ends a multi-line string whose content ends in `"`
                    while pos < end and line[pos] == in_string[0]:
                        pos += 1
                in_string = None
            else:
                pos += 1
            continue
        if char == "#":
            break
        if char in "\"'":
            in_string = char * 3 if line.startswith(char * 3, pos) else char
            pos += len(in_string)
            continue
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        pos += 1
    if in_string is not None and len(in_string) == 1:
        in_string = None  # an unclosed one-line string is a TOML error that tomllib reports
    return depth, in_string


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
