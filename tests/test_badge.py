"""The badge renditions and the message catalogue."""

from __future__ import annotations

import re
import string
import struct

import pytest

from presencebot import badge, catalogue
from presencebot.badge import Badge
from tests.support import REPO

LONGEST_AGENCY = "Royal Newfoundland Constabulary & Service de police de la Ville de Montréal (X)"[:80]


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    en, fr = catalogue.CATALOGUE["en"], catalogue.CATALOGUE["fr"]
    assert en.keys() == fr.keys()
    for key in en:
        assert placeholders(en[key]) == placeholders(fr[key]), key


def test_unknown_language_falls_back_to_english() -> None:
    assert catalogue.text("de", "badge.title") == "POLICE PRESENCE"


@pytest.mark.parametrize("language", ["en", "fr"])
def test_irc_badge_is_at_most_three_lines_each_under_400_bytes(language: str) -> None:
    b = Badge.build(agency=LONGEST_AGENCY, info_url="https://police.example/" + "x" * 60, language=language)
    lines = b.irc_lines()
    assert 1 <= len(lines) <= 3
    for line in lines:
        assert len(line.encode("utf-8")) < 400
        assert "\r" not in line and "\n" not in line and "\0" not in line
    assert LONGEST_AGENCY in lines[0]
    assert "!police" in lines[2] and "!help" in lines[2] and "!report" in lines[2]
    assert "https://police.example/" in lines[2]


def test_irc_badge_uses_mirc_colour_codes_and_resets() -> None:
    head = Badge.build(agency="A", info_url="https://a.example", language="en").irc_lines()[0]
    assert "\x0300,02" in head and "\x0302,00" in head  # white-on-blue and blue-on-white squares
    assert "\x02" in head  # bold title
    assert head.index("\x0f") < head.index("A is present")  # colours reset before the wording
    assert re.sub(r"\x03\d\d,\d\d|[\x02\x0f]", "", head).strip().startswith("POLICE PRESENCE")


def test_plain_and_ansi_carry_the_same_wording() -> None:
    b = Badge.build(agency="Test Police", info_url="https://t.example", language="en")
    plain = b.plain()
    ansi = re.sub(r"\x1b\[[0-9;]*m", "", b.ansi())
    for part in (b.title, b.who, b.what, b.help):
        assert part in plain
        assert part in ansi
    assert "Test Police" in plain and "https://t.example" in plain


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("size", badge.PNG_SIZES)
def test_png_renders_have_their_sizes(size: int) -> None:
    assert _png_size(badge.png(size)) == (size, size)
    assert badge.png(size) == (REPO / "logos" / f"badge-{size}.png").read_bytes()


def test_unknown_png_size_is_refused() -> None:
    with pytest.raises(ValueError, match="no badge PNG at 64 px"):
        badge.png(64)


def test_svg_master_is_self_contained() -> None:
    svg = badge.svg().decode()
    assert svg.lstrip().startswith("<svg") or svg.lstrip().startswith("<?xml")
    assert "<title>Police presence badge</title>" in svg
    assert "POLICE" in svg and "PRESENCE" in svg
    assert "<script" not in svg and 'href="http' not in svg and "<image" not in svg
