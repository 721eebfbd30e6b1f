"""The first built-in rule, tested the way a rule author would: a few lines of chat each."""

from __future__ import annotations

import pytest

from presencebot.rule import Severity
from presencebot.rules.minor_whereabouts import RULE, normalise, stated_age
from presencebot.testing import ChatResult, check_chat


def test_age_then_request_by_mention(rule_chat) -> None:  # type: ignore[no-untyped-def]
    result: ChatResult = rule_chat(
        RULE,
        """
        lily: hiii im 12
        mark: lily where do u live?
    """,
    )
    assert result.flagged == {1: ["lily"]}
    (flag,) = result.on(1)
    assert flag.category == "location"
    assert flag.requester is not None and flag.requester.nick == "mark"
    assert "lily stated age 12" in flag.explanation and "by mention" in flag.explanation
    assert len(flag.evidence) == 1  # the age statement's event id


def test_no_age_known_no_flag_in_a_general_room() -> None:
    assert check_chat(RULE, "lily: hi\nmark: lily where do u live?").flagged == {}


def test_minors_room_presumes_everyone_a_minor() -> None:
    result = check_chat(RULE, "lily: hi\nmark: lily what school do u go to", audience="minors")
    assert result.flagged == {1: ["lily"]}
    assert result.on(1)[0].category == "school"


def test_stated_adult_age_overrides_a_minors_room() -> None:
    result = check_chat(RULE, "lily: im 19 lol\nmark: lily where do u live", audience="minors")
    assert result.flagged == {}


def test_reply_targets_without_naming() -> None:
    result = check_chat(RULE, "lily: im 13\nkian: hey\nmark > lily: whats ur address")
    assert result.flagged == {2: ["lily"]}
    assert result.on(2)[0].severity is Severity.CRITICAL


def test_two_person_follow_up() -> None:
    result = check_chat(RULE, "lily: im 11\nmark: cool wanna meet up saturday")
    assert result.flagged == {1: ["lily"]}
    assert result.on(1)[0].category == "meetup"


def test_asking_yourself_or_the_wrong_person_is_not_flagged() -> None:
    assert check_chat(RULE, "lily: im 12 where do u live?").flagged == {}
    three = "lily: im 12\nkian: im 35\nsam: hi\nmark: kian where do u live"
    assert check_chat(RULE, three).flagged == {}


def test_french() -> None:
    result = check_chat(RULE, "zoe: j'ai 12 ans\nnathan: zoe t'habites où ?", language="fr")
    assert result.flagged == {1: ["zoe"]}
    assert (
        check_chat(RULE, "zoe: j'ai 12 ans\nnathan: zoe c quoi ton adresse mail", language="fr").flagged == {}
    )


def test_numbers_that_are_not_ages() -> None:
    for text in ("im 12 minutes away", "im 12% sure", "im 12/10 happy"):
        assert stated_age(normalise(text)) is None, text
    assert stated_age(normalise("Im 12")) == (12, "im 12")
    assert stated_age(normalise("12yo")) is not None


def test_zero_width_and_fullwidth_are_normalised() -> None:
    assert normalise("ｗｈｅｒｅ d\u200bo u live") == "where do u live"


def test_the_helper_reports_line_times_and_rejects_bad_lines() -> None:
    result = check_chat(RULE, "[+5] lily: im 12\n[+600] mark: lily where do u live")
    assert [line.t for line in result.lines] == [5.0, 600.0]
    with pytest.raises(ValueError, match="line 1"):
        check_chat(RULE, "no nick here")
