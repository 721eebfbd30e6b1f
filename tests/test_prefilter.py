"""The literal prefilter never hides a match: a pattern that matches a text is always a candidate."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from presencebot.rules import requests
from presencebot.rules.prefilter import Prefilter, needles
from presencebot.text import normalise

ROOT = Path(__file__).resolve().parent


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"\bwhat school\b", {"what school"}),
        (r"\b(?:where|wer) (?:do|d) u live", {" u live"}),  # the longest guaranteed literal
        (r"\b(?:postcode|zip code|zipcode)\b", {"postcode", "zip code", "zipcode"}),
        (r"(?:meet|see) (?:up|u)?", {"meet", "see"}),
        (r"ab?c", {"ab", "c"}),  # the best part: "a" is too short, so... see below
        (r"\d+ [a-z]", None),
        (r"(?i)school", None),  # case-insensitive patterns are not analysed
        (r"what (?i:school)", {"what "}),
    ],
)
def test_needles(pattern: str, expected: set[str] | None) -> None:
    found = needles(pattern)
    if pattern == r"ab?c":
        # "a" and "c" are one character each, "b" is optional: nothing useful is guaranteed.
        assert found is None
        return
    assert found == (frozenset(expected) if expected is not None else None)


def _texts() -> list[str]:
    texts: list[str] = []
    for path in [*sorted((ROOT / "data").glob("*.jsonl"))]:
        for line in path.read_text(encoding="utf-8").splitlines():
            texts += [m["text"] for m in json.loads(line)["messages"]]
    for path in sorted(ROOT.glob("test_*.py")):
        texts += re.findall(r'"([^"\n]{1,200})"', path.read_text(encoding="utf-8"))
    return texts


PREFILTER = Prefilter([p.regex for p in requests.PATTERNS])


def _check(text: str) -> None:
    form = normalise(text)
    for candidate_form in {form.plain, form.leet}:
        candidates = PREFILTER.candidates(candidate_form)
        for index, pattern in enumerate(requests.PATTERNS):
            if pattern.regex.search(candidate_form):
                assert index in candidates, (text, pattern.regex.pattern[:80])


def test_every_match_in_the_corpora_and_tests_is_a_candidate() -> None:
    texts = _texts()
    assert len(texts) > 2000
    for text in texts:
        _check(text)


_WORDS = st.sampled_from(
    [
        "where",
        "do",
        "u",
        "you",
        "live",
        "ur",
        "your",
        "address",
        "addy",
        "postcode",
        "school",
        "skool",
        "what",
        "which",
        "meet",
        "up",
        "come",
        "over",
        "pick",
        "t'habites",
        "ou",
        "tu",
        "restes",
        "quelle",
        "ecole",
        "on",
        "se",
        "voit",
        "irl",
        "the",
        "a",
        "lol",
        "near",
        "town",
        "area",
        "street",
        "wherever",
        "somewhere",
        "nowhere",
        "homeschool",
        "meetup",
    ]
)


@given(st.lists(_WORDS, min_size=1, max_size=12).map(" ".join))
@settings(max_examples=300, deadline=None)
def test_random_sentences_of_cue_words(text: str) -> None:
    _check(text)
