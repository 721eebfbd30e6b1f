"""Text normalisation against evasion, for rules that read chat.

Chat text is hostile input: a person who asks a child where they live and knows a bot is watching
will write ``whеrе`` with Cyrillic letters, ``add\u200bress`` with a zero-width space,
``ｐｏｓｔｃｏｄｅ`` in fullwidth, ``p o s t c o d e`` spaced out or ``wh3r3 d0 u l1v3`` in leetspeak.
:func:`normalise` folds all of these to one plain lower-case Latin form so that a rule can keep
its patterns simple, and a second form (``leet``) with digits decoded inside words, kept apart
because decoding digits everywhere would destroy the ages ("12yo") and school years ("yr7") the
rule has to read.

Every step is bounded: the input is cut to :data:`MAX_SCAN` characters before anything else,
steps that can grow the text are capped at ``3 * MAX_SCAN`` characters, every regex is linear (no
nested quantifiers over overlapping classes), and pure-ASCII text, the usual case, skips the
Unicode steps that cannot change it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["MAX_SCAN", "Normalised", "fold", "normalise"]

MAX_SCAN: int = 2000
"""Characters of a message that are ever looked at; a longer message is judged on its start."""

_MAX_PLAIN = 3 * MAX_SCAN
"""Cap on the text after steps that expand it (NFKC turns U+FDFA into 18 characters, an emoji
into a word), so that later steps and the rules' regexes do bounded work."""


@dataclass(frozen=True, slots=True)
class Normalised:
    """The two forms a rule matches against.

    ``plain`` is safe for everything (ages, numbers, nicks); ``leet`` additionally reads digits and
    symbols inside words as letters, which finds ``wh3r3 d0 u l1v3`` but must not be used to read
    numbers.  When a message has nothing to decode, ``leet is plain``.
    """

    plain: str
    leet: str


# --- Step 2: invisible and control characters -------------------------------------------------

# Format characters and combining marks only live in planes 0, 1 and 14 (planes 2-3 are CJK
# ideographs, 4-13 unassigned, 15-16 private use); scanning just these keeps the import cheap.
_SCAN_RANGES = (range(0x0000, 0x20000), range(0xE0000, 0xE1000))


def _by_category(*categories: str) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {category: [] for category in categories}
    for block in _SCAN_RANGES:
        for code in block:
            codes = found.get(unicodedata.category(chr(code)))
            if codes is not None:
                codes.append(code)
    return found


_CATEGORIES = _by_category("Cf", "Cc", "Mn", "Me")  # one pass: the scan is most of the import time


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _bmp_class(codes: Iterable[int]) -> re.Pattern[str]:
    """A regex class of the BMP members of ``codes``, used to decide whether a table applies.

    sre tests a BMP-only class through a bitmap, a few ns per character; one astral range turns
    the class into a list of ranges walked for every character (5 µs on a chat line for the
    combining marks), so astral characters are checked separately by :func:`_translate`.
    """
    ranges: list[tuple[int, int]] = []
    for code in sorted(c for c in codes if c < 0x10000):
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    return re.compile("[" + "".join(f"\\u{lo:04x}-\\u{hi:04x}" for lo, hi in ranges) + "]")


def _translate(text: str, table: Mapping[int, str | None], gate: re.Pattern[str]) -> str:
    """``text.translate(table)``, skipped (returning ``text`` itself) when nothing in it applies.

    On non-ASCII text ``str.translate`` with a dict costs ~50 ns a character, ten times the gate.
    Astral characters (emoji, mostly) are few in a message, so they are looked up one by one.
    """
    if gate.search(text) is None and not any(ord(c) in table for c in _ASTRAL.findall(text)):
        return text
    return text.translate(table)


_KEEP_CONTROLS = frozenset({ord("\n"), ord("\t")})
_INVISIBLE: dict[int, str | None] = dict.fromkeys(_CATEGORIES["Cf"])
_INVISIBLE.update(
    dict.fromkeys(
        # Hangul fillers render as blanks and so hide letters; CGJ joins nothing visible; variation
        # selectors would otherwise sit between an emoji and the table that turns it into a word.
        [0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)],
        None,
    )
)
# Controls become a space rather than vanishing: a control between two words still separates them.
_INVISIBLE.update({code: " " for code in _CATEGORIES["Cc"] if code not in _KEEP_CONTROLS})
# The braille blank is drawn as an empty cell and is used as a space that filters do not see.
_INVISIBLE[0x2800] = " "
_INVISIBLE_GATE = _bmp_class(_INVISIBLE)

_NFKC_CHUNK = 256

_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

# --- Step 4 (and 7): look-alike letters and word emoji -----------------------------------------

_LOOKALIKES: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ӏ": "l", "ё": "e",
    "һ": "h", "ԛ": "q", "ԝ": "w", "ү": "y", "ѵ": "v",
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p", "С": "c",
    "Т": "t", "У": "y", "Х": "x", "І": "i", "Ј": "j", "Ѕ": "s", "Ԁ": "d", "Ӏ": "l", "Ё": "e",
    "Һ": "h", "Ԛ": "q", "Ԝ": "w", "Ү": "y", "Ѵ": "v",
    # Greek
    "α": "a", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "ι": "i", "κ": "k", "ν": "v", "ε": "e",
    "χ": "x", "ω": "w", "η": "n", "ϲ": "c", "ϳ": "j",
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n",
    "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x", "Ϲ": "c",
    # Armenian
    "օ": "o", "ս": "u", "հ": "h", "ո": "n",
    # Latin small capitals
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ꜰ": "f", "ɢ": "g", "ʜ": "h", "ɪ": "i",
    "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ꞯ": "q", "ʀ": "r",
    "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
    # Latin letters that NFKC and accent stripping leave alone (none of them French)
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɡ": "g", "ɩ": "i", "ǀ": "l", "ℓ": "l",
    "ø": "o", "Ø": "o", "đ": "d", "Đ": "d", "ħ": "h", "Ħ": "h", "ł": "l", "Ł": "l",
    "ŧ": "t", "Ŧ": "t", "ƀ": "b", "ɨ": "i", "ʉ": "u",
    # Typographic punctuation that phones substitute as people type ("I’m", "t’habites")
    "‘": "'", "’": "'", "‛": "'", "ʼ": "'", "′": "'", "“": '"', "”": '"', "„": '"', "‟": '"',
    "‐": "-", "‒": "-", "–": "-", "—": "-", "−": "-",
}  # fmt: skip


def _precomposed_lookalikes() -> dict[str, str]:
    """Greek and Cyrillic letters with accents (ά, ѐ, ї) map to the accented Latin letter.

    The table runs before accents are stripped, so without this ``ά`` would keep its Greek base.
    The result is NFC, so Greek ``ὺ`` becomes the single character ``ù`` that the "où" guard sees.
    """
    extra: dict[str, str] = {}
    for code in (*range(0x0370, 0x0530), *range(0x1F00, 0x2000)):
        char = chr(code)
        decomposed = unicodedata.normalize("NFD", char)
        base = _LOOKALIKES.get(decomposed[0])
        if len(decomposed) > 1 and char not in _LOOKALIKES and base is not None:
            extra[char] = unicodedata.normalize("NFC", base + decomposed[1:])
    return extra


_EMOJI_WORDS = {
    "house": "🏠🏡🏘",
    "location": "📍📌",
    "map": "🗺",
    "school": "🏫",
    "bus": "🚌🚍",
    "address": "📮📬📫📪📭",
}


def _letter_symbols() -> dict[str, str]:
    """Regional indicators (🇦, two make a flag), negative circled 🅐 and negative squared 🅰.

    People write words with them, and unlike circled or fullwidth letters they have no NFKC
    decomposition.
    """
    return {
        chr(first + offset): chr(ord("a") + offset)
        for first in (0x1F1E6, 0x1F150, 0x1F170)
        for offset in range(26)
    }


_LOOKALIKE_TABLE = str.maketrans(
    _LOOKALIKES
    | _precomposed_lookalikes()
    | _letter_symbols()
    | {emoji: f" {word} " for word, emojis in _EMOJI_WORDS.items() for emoji in emojis}
)
_LOOKALIKE_GATE = _bmp_class(_LOOKALIKE_TABLE)

# --- Step 6: accents ---------------------------------------------------------------------------

_MARKS: dict[int, str | None] = dict.fromkeys(_CATEGORIES["Mn"] + _CATEGORIES["Me"])
_MARKS_GATE = _bmp_class(_MARKS)
# U+200B cannot survive step 2, so it is free to stand in for "où" while accents are stripped.
_OU_GUARD = "\u200b"

# --- Step 8: spaced letters --------------------------------------------------------------------

_LETTER = r"[^\W\d_]"
_SEPARATORS = "[ .\\-_*·\n\t]"
# Three or more single letters, one separator between each (the same one throughout), not glued
# to a word on the left (so "queen_k w h e r e" leaves the k with its nick) nor on the right, and
# an optional trailing copy of a non-blank separator ("a.d.d.r.e.s.s.").  Each repetition eats
# exactly two characters, so backtracking is bounded by one run.
_SPACED_RUN = re.compile(
    rf"(?<!\w){_LETTER}({_SEPARATORS}){_LETTER}(?:\1{_LETTER})+(?![^\W_])(?:(?!\s)\1(?![^\W_]))?"
)
# Cheap necessary condition for a run: its last two letters each follow a separator and the last
# ends it.  A class at the start of a pattern lets sre skip ahead, which a lookbehind does not.
_SPACED_HINT = re.compile(rf"{_SEPARATORS}{_LETTER}{_SEPARATORS}{_LETTER}(?![^\W_])")
_SPACED_PAIR = re.compile(rf"(?<!\w){_LETTER} {_LETTER}(?![^\W_])")

# --- Step 9: repeats ---------------------------------------------------------------------------

# Digits are left alone: "3000" is a postcode and "1000" a number, not an elongated word.
_REPEAT = re.compile(r"(\D)\1{2,}")
# Three times the speed of _REPEAT on text without a run, because it has no class to test.
_REPEAT_HINT = re.compile(r"(.)\1\1", re.DOTALL)

# --- leet ---------------------------------------------------------------------------------------

_LEET_TABLE = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "ate", "@": "a", "$": "s"}
    | {"!": "i", "|": "l"}
)
_WORD_CHAR = "[a-z0-9@$!|]"
_LEET_HINT = re.compile(r"[0134578@$|]")
# A "!" only counts when something follows it in the word: "live!" is punctuation, "l!ve" is not.
_BANG_HINT = re.compile(r"![a-z0-9@$|]")
# Tokens that keep their digits: a number with a unit or age suffix (12yo, 14ans, 6e, 3pm, 2nd,
# 10k), or a short label with a number that has a digit other than 0 and 8 (yr7, f13, u14s, lvl12).
_KEEP_DIGITS = (
    r"\d+(?:st|nd|rd|th|y|yo|yr|yrs|an|ans|am|pm|e|er|ere|eme|h|hr|hrs|min|mins|k|m|s|x|ish"
    r"|km|cm|mm|mi|ft|kg|lb|lbs|gb|mb|p)"
    r"|[a-z]{1,4}(?:[1-79]\d?|[08][1-79])s?"
)
# A whole token to decode: it starts where no token character precedes (so each token is tried
# once, and every part below scans it at most once), has an ASCII letter, is not a kept form
# (trailing "!" aside), and holds a leet character.
_LEET_TOKEN = re.compile(
    rf"(?<!{_WORD_CHAR})(?=[0-9@$!|]*[a-z])(?!(?:{_KEEP_DIGITS})!*(?!{_WORD_CHAR}))"
    rf"{_WORD_CHAR}*[0134578@$!|]{_WORD_CHAR}*"
)


def _decode_token(match: re.Match[str]) -> str:
    core = match.group().rstrip("!")
    decoded = core.translate(_LEET_TABLE)
    if _REPEAT_HINT.search(decoded) is not None:
        decoded = _REPEAT.sub(r"\1\1", decoded)
    return decoded + match.group()[len(core) :]


def _leet(plain: str) -> str:
    """Read digits and symbols as letters inside words, but not in numbers, ages or labels.

    A token is a maximal run of ``[a-z0-9@$!|]`` (so an apostrophe splits "t'h4b1t3s"). It is
    decoded when all of these hold:

    * it has an ASCII letter: "12", "3:15" and "12/10" are numbers and stay;
    * it is not a number with a unit or age suffix: digits followed by one of st, nd, rd, th, y,
      yo, yr(s), an(s), am, pm, e, er, ere, eme, h, hr(s), min(s), k, m, s, x, ish or a common
      measure (km, cm, mm, mi, ft, kg, lb(s), gb, mb, p) stays: 12yo, 14ans, 6e, 3pm, 2nd, 10k.
      "1rl" has no such suffix, so it reads "irl";
    * it is not a label: one to four letters, one or two digits, an optional "s" (yr7, f13, u14s,
      lvl12, year9, mp3) stays, unless its digits are all 0s and 8s, which after a short stem are
      letters (d0 -> do, m8 -> mate, est8 -> estate, gr8 -> grate, t00 -> too);
    * it holds a character to decode: 0->o 1->i 3->e 4->a 5->s 7->t 8->ate @->a $->s |->l and
      !->i, except for trailing "!" which are punctuation ("live!" stays "live!").

    A run that decoding creates collapses like any other (sk000l -> skoool -> skool).
    """
    if _LEET_HINT.search(plain) is None and ("!" not in plain or _BANG_HINT.search(plain) is None):
        return plain
    decoded = _LEET_TOKEN.sub(_decode_token, plain)
    return plain if decoded == plain else decoded


# --- the pipeline -------------------------------------------------------------------------------


def _join_spaced_run(match: re.Match[str]) -> str:
    # Letters sit at even offsets (one character each); a trailing separator lands on an odd one.
    return match.group()[::2]


def _join_spaced(text: str) -> str:
    """Join letters written one at a time; pairs too, but only in a message written that way.

    A lone pair ("u r", "a b") is ordinary English, so pairs are joined only once a run of three
    proves the writer is spacing letters out; then two or more spaces are the word breaks.
    """
    joined, runs = _SPACED_RUN.subn(_join_spaced_run, text)
    if runs:
        joined = _SPACED_PAIR.sub(_join_spaced_run, joined)
    return joined


def _tidy(text: str) -> str:
    """Steps 8 and 9, shared by both paths."""
    if _SPACED_HINT.search(text) is not None:
        text = _join_spaced(text)
    if _REPEAT_HINT.search(text) is not None:
        text = _REPEAT.sub(r"\1\1", text)
    return " ".join(text.split())[:_MAX_PLAIN]


def _nfkc(text: str) -> str:
    """NFKC, stopping once the result passes the cap.

    U+FDFA expands to 18 characters: 2000 of them take ~2 ms to normalise into text that is then
    cut to a sixth.  Long text is normalised in chunks instead, each ending before a character of
    combining class 0 so that marks stay with their base (the few starters that compose with a
    previous starter, Hangul jamo, are recomposed by the NFC in :func:`_strip_accents`).
    """
    if len(text) <= _NFKC_CHUNK:
        return unicodedata.normalize("NFKC", text)
    parts: list[str] = []
    size = start = 0
    while start < len(text) and size < _MAX_PLAIN:
        end = start + _NFKC_CHUNK
        while end < len(text) and unicodedata.combining(text[end]):
            end += 1
        part = unicodedata.normalize("NFKC", text[start:end])
        parts.append(part)
        size += len(part)
        start = end
    return "".join(parts)[:_MAX_PLAIN]


def _strip_accents(text: str) -> str:
    """Drop accents, but keep "où" (where), which differs from "ou" (or) only by its accent."""
    guarded = text.replace("où", _OU_GUARD)
    stripped = _translate(unicodedata.normalize("NFD", guarded), _MARKS, _MARKS_GATE)
    if stripped is guarded:  # nothing decomposed, nothing dropped
        return text
    return unicodedata.normalize("NFC", stripped).replace(_OU_GUARD, "où")


def _plain_ascii(text: str) -> str:
    """The plain form of ASCII text, which NFKC, look-alikes, accents and emoji cannot change."""
    if not text.isprintable() and _ASCII_CONTROL.search(text) is not None:
        text = text.translate(_INVISIBLE)
    return _tidy(text.lower())


def _plain_unicode(text: str) -> str:
    """The plain form of any text; gives the same result as :func:`_plain_ascii` on ASCII."""
    text = _nfkc(_translate(text, _INVISIBLE, _INVISIBLE_GATE))
    text = _translate(text, _LOOKALIKE_TABLE, _LOOKALIKE_GATE)[:_MAX_PLAIN]
    text = text.casefold()[:_MAX_PLAIN]
    if not text.isascii():
        text = _strip_accents(text)
    return _tidy(text)


def _plain(text: str) -> str:
    text = text[:MAX_SCAN]
    return _plain_ascii(text) if text.isascii() else _plain_unicode(text)


def fold(text: str) -> str:
    """The plain form only, for nicks and single words where leetspeak would misread digits."""
    return _plain(text)


def normalise(text: str) -> Normalised:
    """Both forms of a message; see the module docstring for why there are two."""
    plain = _plain(text)
    return Normalised(plain, _leet(plain))
