"""Age statements: the forms children use, and the numbers that are not ages."""

from __future__ import annotations

import pytest

from presencebot.rules import ages
from presencebot.text import normalise


def said(text: str) -> ages.AgeStatement | None:
    return ages.statement(normalise(text).plain)


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("im 12", 12),
        ("I'm only 11 lol", 11),
        ("i am 13 and bored", 13),
        ("12yo btw", 12),
        ("not bad for a 13 yo", 13),
        ("me im 11 years old", 11),
        ("13/f here", 13),
        ("f14 from leeds", 14),
        ("turning 14 next month", 13),  # a coming birthday: 13 today
        ("13 next month!!", 12),
        ("ill be 14 in june", 13),
        ("14 (nearly 15) lol", 14),
        ("quinze ans aujourd'hui", 15),
        ("my age is 14 and i skate", 14),
        ("I am twelve years old", 12),
        ("just turned 13!!", 13),
        ("15 and my parents are strict", 15),
        ("been up all night, 14 and exhausted", 14),
        ("j'ai 12 ans", 12),
        ("jai 13 ans et je m'ennuie", 13),
        ("11ans et j'ai gagné", 11),
        ("Ｉ’m １２", 12),
    ],
)
def test_minor_ages(text: str, age: int) -> None:
    found = said(text)
    assert found is not None, text
    assert found.minor
    assert found.age == age


@pytest.mark.parametrize(
    "text",
    [
        "year 8 is so hard",
        "im in yr7",
        "grade 7 science fair tomorrow",
        "im in 7th grade",
        "just got home from middle school",
        "chu en sec 2 pis",
        "jsuis en 5e",
        "je suis en CM2",
        "i play for our u13s",
        "im a year 9, u?",
        "still in primary but i can do long division",
        "im in 6th class",
        "8th grader here",
        "je passe en 3e l'année prochaine",
        "je suis en cinquième",
        "chu en secondaire 2",
        "I'm in sixth grade",
    ],
)
def test_school_years_make_a_minor(text: str) -> None:
    found = said(text)
    assert found is not None, text
    assert found.minor
    assert found.age is None


@pytest.mark.parametrize(
    "text",
    [
        "im 12 minutes away",
        "im 13 hours into this game",
        "lvl 12 finally",
        "rated it 12/10",
        "im ranked 12th",
        "my son is 12 and loves lego",  # someone else's age: the speaker is a parent
        "i was 12 when this came out",
        "j'avais 12 ans quand l'album est sorti",
        "mon frère a 12 ans",
        "see u at 12",
        "12 diamonds!!",
        "niveau 12 enfin",
        "my little sister is in year 5",
        "mon gars a 13 ans",
        "chu prof de sec 2 depuis 10 ans",
    ],
)
def test_numbers_that_are_not_the_speakers_minor_age(text: str) -> None:
    found = said(text)
    assert found is None or not found.minor, text


@pytest.mark.parametrize(
    "text",
    [
        "im 32",
        "just turned 18!!",
        "hi all, dad of two here",
        "I teach year 8 and they're wild",
        "je suis prof de 5e",
        "j'ai 27 ans",
        "youth worker, 29",
        "uni student, 20, stressed",
    ],
)
def test_adult_statements(text: str) -> None:
    found = said(text)
    if found is not None:
        assert not found.minor, text


def test_answer_to_how_old() -> None:
    assert ages.answer_to_how_old(normalise("15 why").plain) == ages.AgeStatement(True, 15, "15 why")
    assert ages.answer_to_how_old(normalise("12").plain) is not None
    assert ages.answer_to_how_old(normalise("fourteen").plain) == ages.AgeStatement(True, 14, "fourteen")
    assert ages.answer_to_how_old(normalise("the 12 bus is late again today").plain) is None
    assert ages.HOW_OLD.search(normalise("u seem young, how old r u").plain)
