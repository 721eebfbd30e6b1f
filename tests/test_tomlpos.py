"""Unit tests of the TOML key-path -> line scanner used to place config errors."""

from __future__ import annotations

import tomllib

import pytest

from presencebot.tomlpos import key_lines, locate


def test_plain_keys_at_top_level() -> None:
    text = "a = 1\n\nb = 'two'\n  c=3\n"
    assert key_lines(text) == {("a",): 1, ("b",): 3, ("c",): 4}


def test_dotted_key_places_every_prefix_on_its_first_line() -> None:
    text = "a.b = 1\na.c = 2\nx . y . z = 3\n"
    lines = key_lines(text)
    assert lines[("a",)] == 1
    assert lines[("a", "b")] == 1
    assert lines[("a", "c")] == 2
    assert lines[("x", "y", "z")] == 3
    assert lines[("x", "y")] == 3


def test_quoted_keys_lose_their_quotes_but_keep_dots_inside() -> None:
    text = '"a.b" = 1\n\'c d\' = 2\nsite."x.y".z = 3\n"it\'s" = 4\n\'say "hi"\' = 5\n'
    lines = key_lines(text)
    assert lines[("a.b",)] == 1
    assert ("a", "b") not in lines
    assert lines[("c d",)] == 2
    assert lines[("site", "x.y", "z")] == 3
    assert lines[("it's",)] == 4
    assert lines[('say "hi"',)] == 5


def test_table_header_prefixes_keys_below_it() -> None:
    text = "top = 1\n[agency]\nname = 'x'\n\n[ store ]  # comment\npath = 'p'\n"
    lines = key_lines(text)
    assert lines[("top",)] == 1
    assert lines[("agency",)] == 2
    assert lines[("agency", "name")] == 3
    assert lines[("store",)] == 5
    assert lines[("store", "path")] == 6
    assert ("name",) not in lines


def test_nested_table_header_places_its_ancestors() -> None:
    lines = key_lines("[a.b.c]\nk = 1\n")
    assert lines[("a",)] == 1
    assert lines[("a", "b")] == 1
    assert lines[("a", "b", "c", "k")] == 2


def test_array_of_tables_counts_elements() -> None:
    text = "[[notify]]\nname = 'a'\n[[notify]]\nname = 'b'\n[[notify]]\nname = 'c'\n"
    lines = key_lines(text)
    assert lines[("notify",)] == 1  # the whole array: its first element
    assert lines[("notify", 0)] == 1
    assert lines[("notify", 1, "name")] == 4
    assert lines[("notify", 2)] == 5
    assert lines[("notify", 2, "name")] == 6


def test_nested_arrays_of_tables_restart_per_parent_element() -> None:
    text = """\
[[networks]]
name = "a"
[[networks.rooms]]
id = "#a1"
[[networks.rooms]]
id = "#a2"
[networks.settings]
nick = "n"

[[networks]]
name = "b"
[[networks.rooms]]
id = "#b1"
[[networks.rooms]]
id = "#b2"
[[networks.rooms]]
id = "#b3"
"""
    lines = key_lines(text)
    assert lines[("networks", 0, "rooms", 0, "id")] == 4
    assert lines[("networks", 0, "rooms", 1, "id")] == 6
    assert lines[("networks", 0, "settings", "nick")] == 8
    assert lines[("networks", 1)] == 10
    assert lines[("networks", 1, "name")] == 11
    assert lines[("networks", 1, "rooms", 0, "id")] == 13
    assert lines[("networks", 1, "rooms", 2, "id")] == 17
    assert lines[("networks", 1, "rooms")] == 12
    assert ("networks", 1, "rooms", 3) not in lines
    assert ("networks", 2) not in lines


def test_multiline_array_is_not_read_as_keys_or_headers() -> None:
    text = """\
rules = [
  "a",   # a = 1
  ["b"],
  [c],
]
after = 1
"""
    lines = key_lines(text)
    assert lines == {("rules",): 1, ("after",): 6}


def test_multiline_inline_brackets_in_strings_and_comments_do_not_count() -> None:
    text = """\
a = "[[not a header" # ]
b = '{'  # {{{
c = [ "]", ']', "\\"]" ]
d = 1
"""
    assert key_lines(text) == {("a",): 1, ("b",): 2, ("c",): 3, ("d",): 4}


@pytest.mark.parametrize("delim", ['"""', "'''"])
def test_multiline_string_is_skipped(delim: str) -> None:
    text = f"note = {delim}\n[not_a_table]\nfake = 1\n{delim}\nreal = 2\n"
    assert tomllib.loads(text)["real"] == 2
    assert key_lines(text) == {("note",): 1, ("real",): 5}


def test_text_after_a_closing_multiline_string_is_still_scanned() -> None:
    text = 'a = ["""x\n[y""", """z\nw"""]\nb = 1\n[t]\nc = 2\n'
    assert tomllib.loads(text) == {"a": ["x\n[y", "z\nw"], "b": 1, "t": {"c": 2}}
    assert key_lines(text) == {("a",): 1, ("b",): 4, ("t",): 5, ("t", "c"): 6}


def test_one_line_triple_quoted_strings_and_other_delimiters_inside() -> None:
    text = 'a = \'\'\'x\'\'\'\nb = "\'\'\'"\nc = \'"""\'\nd = """q""""\ne = 1\n'
    assert tomllib.loads(text)["d"] == 'q"'
    assert key_lines(text) == {("a",): 1, ("b",): 2, ("c",): 3, ("d",): 4, ("e",): 5}


def test_escaped_quote_in_multiline_basic_string_does_not_end_it() -> None:
    text = 'a = """x \\""" still\n[no]\n"""\nb = 1\n'
    assert tomllib.loads(text)["b"] == 1
    assert key_lines(text) == {("a",): 1, ("b",): 4}


def test_comments_and_blank_lines_are_ignored() -> None:
    text = "# x = 1\n   # [table]\n\n[t] # [[u]]\n# k = 2\nk = 3 # = 4\n"
    assert key_lines(text) == {("t",): 4, ("t", "k"): 6}


def test_inline_table_places_only_its_key() -> None:
    lines = key_lines('[[networks]]\nsettings = { color = "purple", nick = "x" }\n')
    assert lines[("networks", 0, "settings")] == 2
    assert ("networks", 0, "settings", "color") not in lines


def test_locate_exact_and_falls_back_to_nearest_parent() -> None:
    lines = key_lines('[[networks]]\nname = "a"\nsettings = { color = "x" }\n[[networks]]\nname = "b"\n')
    assert locate(("networks", 0, "name"), lines) == 2
    assert locate(("networks", 0, "settings", "color"), lines) == 3
    assert locate(("networks", 1, "rooms", 0, "id"), lines) == 4
    assert locate(("networks",), lines) == 1


def test_locate_returns_none_when_nothing_matches() -> None:
    lines = key_lines("[agency]\nname = 'x'\n")
    assert locate(("memory", "max_messages"), lines) is None
    assert locate((), lines) is None
    assert locate(("agency", "name"), {}) is None
