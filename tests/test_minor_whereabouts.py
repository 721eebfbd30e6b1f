"""The built-in rule end to end, the way a rule author tests: a few lines of chat each.

Every example here is written for this file (not taken from the evaluation corpus).
"""

from __future__ import annotations

import pytest

from presencebot.rule import Severity
from presencebot.rules.minor_whereabouts import RULE
from presencebot.testing import ChatResult, check_chat


def chat(text: str, **room: object) -> ChatResult:
    return check_chat(RULE, text, **room)  # type: ignore[arg-type]


# --- the three conditions -----------------------------------------------------------------------


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
    assert len(flag.evidence) == 1  # the age statement


def test_no_belief_about_age_means_no_flag_in_a_general_room() -> None:
    assert chat("lily: hi\nmark: lily where do u live?").flagged == {}


def test_request_before_the_age_is_known_is_not_flagged() -> None:
    assert chat("mark: sam where do u live\nsam: why, im 11").flagged == {}


def test_minors_room_presumes_everyone_a_minor() -> None:
    result = chat("lily: hi\nmark: lily which school do u go to", audience="minors")
    assert result.flagged == {1: ["lily"]}
    assert result.on(1)[0].category == "school"


def test_adult_statement_overrides_the_minors_room() -> None:
    assert (
        chat("jo: hi im jo, 31, a volunteer here\nkid: jo where do u live", audience="minors").flagged == {}
    )
    assert chat("lily: im 19 now lol\nmark: lily where do u live", audience="minors").flagged == {}


def test_a_later_age_statement_replaces_an_earlier_one() -> None:
    result = chat("amy: im 12\namy: jk im 25 lol\nbob: amy where do u live")
    assert result.flagged == {}


# --- aimed at -------------------------------------------------------------------------------------


def test_reply_targets_without_naming() -> None:
    result = chat("lily: im 13\nkian: hey\nmark > lily: whats ur home address")
    assert result.flagged == {2: ["lily"]}


def test_at_mention_and_nick_at_the_end() -> None:
    assert chat("lily: year 7 is hard\nkian: yo\nmark: @lily what school").flagged == {2: ["lily"]}
    assert chat("lily: year 7 is hard\nkian: yo\nmark: what school r u at lily?").flagged == {2: ["lily"]}


def test_part_of_a_nick_at_the_edge_of_the_message() -> None:
    assert chat("lily_rose_09: im 11\nkian: yo\nmark: where do u live lily?").flagged == {2: ["lily_rose_09"]}


def test_two_person_follow_up() -> None:
    result = chat("lily: im 11\nmark: cool wanna meet up saturday")
    assert result.flagged == {1: ["lily"]}
    assert result.on(1)[0].category == "meetup"


def test_aimed_at_an_adult_is_not_flagged_even_with_a_child_present() -> None:
    assert chat("kid: im 12\nbob: im 40 lol\nkid: bob where do u live").flagged == {}
    assert chat("kid: im 12\nbob: im 40 lol\nsue: bob where do u live").flagged == {}


def test_in_a_busy_room_without_addressing_nobody_is_targeted() -> None:
    assert chat("lily: im 12\nkian: hi\nzoe: yo\nmark: where do u live").flagged == {}


def test_asking_oneself_is_not_flagged() -> None:
    assert chat("lily: im 12 where do u live?").flagged == {}


def test_follow_up_questions_after_a_request_are_flagged() -> None:
    result = chat("""
        ava: im 13
        ted: ava what area are u in
        ava: north
        ted: which town tho
        ava: no
        ted: just the street then
    """)
    assert result.flagged == {1: ["ava"], 3: ["ava"], 5: ["ava"]}
    assert [result.on(i)[0].category for i in (1, 3, 5)] == ["location", "location", "address"]


def test_split_request_is_flagged_once_on_the_completing_message() -> None:
    result = chat("""
        ava: im 14
        [+12] ted: which
        [+14] ted: school
        [+16] ted: do u go to
    """)
    assert result.flagged == {3: ["ava"]}
    assert len(result.on(3)[0].evidence) == 3  # two fragments and the age statement


# --- evasion ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_text",
    [
        "whats ur p.o.s.t.c.o.d.e",
        "wh3r3 u l1v3",
        "whats ur аddrеss",  # Cyrillic а and е
        "whеrе do u stay",
        "ｗｈａｔ ｓｃｈｏｏｌ",
        "what sch\u200bool do u go to",
        "𝐰𝐡𝐚𝐭 𝐬𝐜𝐡𝐨𝐨𝐥 r u at",
        "wer u livin",
        "🏠 addy??",
        "ur addy pls",
        "w h e r e  d o  u  l i v e",
        "whereeee do u liveeee",
    ],
)
def test_evasions_are_seen_through(request_text: str) -> None:
    assert chat(f"kid: im 12\nstranger: {request_text}").flagged == {1: ["kid"]}, request_text


# --- French ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_text",
    [
        "t'habites où ?",
        "tu vis dans quelle ville",
        "c koi ton adresse",
        "t'es dans quel collège",
        "tu vas à quelle école",
        "on se voit samedi au parc ?",
        "envoie moi ta localisation",
        "tu restes où exactement",
    ],
)
def test_french_requests(request_text: str) -> None:
    assert chat(f"zoe: j'ai 12 ans\nmax: {request_text}", language="fr").flagged == {1: ["zoe"]}, request_text


@pytest.mark.parametrize(
    "text",
    [
        "tu restes ou tu pars ?",
        "c quoi ton adresse mail",
        "donne l'adresse ip du serveur",
        "t'as eu quoi au CP",
        "tu viens de quel pays ?",
        "ne donnez jamais votre adresse",
    ],
)
def test_french_traps(text: str) -> None:
    assert chat(f"zoe: j'ai 12 ans\nmax: {text}", language="fr").flagged == {}, text


# --- not flagged -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "whats the server address",
        "send me the ip address",
        "we need to address this",
        "never tell anyone ur address",
        "if anyone asks what school u go to, tell a mod",
        "meet me at spawn",
        "come over to my island",
        "where r u on the map",
        "what country r u from",
        "what timezone are u in",
        "which state r u in",
    ],
)
def test_not_whereabouts_requests(text: str) -> None:
    assert chat(f"kid: im 12\nother: {text}").flagged == {}, text


def test_the_child_volunteering_or_refusing_is_not_flagged() -> None:
    assert chat("kid: im 12 and i live in leeds\nother: nice, leeds is cool").flagged == {}
    assert chat("kid: im 12, not telling u where i live").flagged == {}
    assert chat("kid: im 13 and some man asked me what school i go to").flagged == {}


# --- severity and explanation ---------------------------------------------------------------------


def test_severity_rises_with_address_adult_and_secrecy() -> None:
    assert chat("kid: im 12\nx: kid what school do u go to").on(1)[0].severity is Severity.MEDIUM
    assert chat("kid: im 12\nx: kid whats ur postcode").on(1)[0].severity is Severity.HIGH
    adult = chat("x: im 45\nkid: im 12\nx: kid whats ur postcode")
    assert adult.on(2)[0].severity is Severity.CRITICAL
    secret = chat("kid: im 12\nx: kid where do u live, dont tell ur mum").on(1)[0]
    assert secret.severity is Severity.HIGH
    assert "secrecy" in secret.explanation


def test_explanation_reads_in_two_seconds() -> None:
    (flag,) = chat("[+0] lily: im 12\n[+180] mark: lily what school do u go to").on(1)
    assert flag.explanation.startswith(
        "lily stated age 12 at 12:00 ('im 12'); mark asked lily about their school at 12:03"
    )
    assert "by mention" in flag.explanation


def test_hostile_text_is_handled() -> None:
    huge = "where do u live " * 5000
    assert chat(f"kid: im 12\nx: {huge}").flagged == {1: ["kid"]}
    assert chat("kid: im 12\nx: " + "a" + "\u0301" * 10_000).flagged == {}
