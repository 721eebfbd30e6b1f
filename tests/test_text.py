"""presencebot.text: every evasion a person uses to hide "where do u live" folds back to plain text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from presencebot.text import MAX_SCAN, Normalised, fold, normalise
from presencebot.text import _plain_ascii as plain_ascii
from presencebot.text import _plain_unicode as plain_unicode


def plain(text: str) -> str:
    return normalise(text).plain


def leet(text: str) -> str:
    return normalise(text).leet


# --- step 1: the cut ---------------------------------------------------------------------------


def test_only_the_first_max_scan_characters_count() -> None:
    tail = " where do u live"
    assert plain("x" * MAX_SCAN + tail) == plain("x" * MAX_SCAN)
    assert "where" not in plain("x " * MAX_SCAN + tail)


# --- step 2: invisible and control characters --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("add\u200bress", "address"),
        ("sn\u200dap map", "snap map"),
        ("ad\u200cdr\u2060ess", "address"),
        ("\ufeffwhere", "where"),
        ("post\u00adcode", "postcode"),
        ("\u202ewhere\u202c \u2066do\u2069 u live", "where do u live"),
        ("sch\u034fool", "school"),
        ("wh\u3164ere", "where"),
        ("wh\u115f\u1160ere", "where"),
        ("wh\uffa0ere", "where"),
        ("what\x00school", "what school"),
        ("what\rschool", "what school"),
        ("where\ndo\tu live", "where do u live"),
        ("where\x85do", "where do"),
    ],
)
def test_invisible_characters_go_and_controls_separate(text: str, expected: str) -> None:
    assert plain(text) == expected


# --- step 3: NFKC ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ｗｈａｔｓ ｕｒ ａｄｄｒｅｓｓ", "whats ur address"),
        ("𝐰𝐡𝐞𝐫𝐞 do u live", "where do u live"),
        ("𝔴𝔥𝔢𝔯𝔢 𝓭𝓸 𝕦 live", "where do u live"),
        ("ⓦⓗⓔⓡⓔ", "where"),
        ("ﬁnd me", "find me"),
        ("im １２", "im 12"),
    ],
)
def test_compatibility_forms_become_ascii(text: str, expected: str) -> None:
    assert plain(text) == expected


# --- step 4: look-alike letters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("whеrе", "where"),  # Cyrillic е
        ("аddrеss", "address"),  # Cyrillic а, е
        ("роstаl", "postal"),  # Cyrillic р, о, а
        ("СКҮРЕ", "ckype"),
        ("ѕсһооӏ", "school"),
        ("ԁо u", "do u"),
        ("wһаt ѕсһооl ёu", "what school eu"),
        ("αddrεss", "address"),  # Greek α, ε
        ("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "abezhikmnoptyx"),
        ("ѕυвυrв", "suburb"),
        ("ᴡʜᴀᴛ ꜱᴄʜᴏᴏʟ", "what school"),
        ("ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢ", "abcdefghijklmnoprstuvwyz"),
        ("ℓive", "live"),
        ("lıve", "live"),
        ("🇼🇭🇪🇷🇪", "where"),
        ("🅰🅳🅳🆁🅴🆂🆂", "address"),
        ("άddrеss lїvѐ", "address live"),  # accented Greek and Cyrillic reach Latin too
    ],
)
def test_look_alike_letters_become_latin(text: str, expected: str) -> None:
    assert plain(text) == expected


def test_typographic_punctuation_becomes_ascii() -> None:
    assert plain("I’m 12, t’habites où ? “ok” – yes") == "i'm 12, t'habites où ? \"ok\" - yes"
    assert leet("t’h4b1t3s") == "t'habites"


def test_french_letters_are_not_treated_as_look_alikes() -> None:
    assert plain("ça où l'œuvre") == "ca où l'œuvre"


# --- steps 5 and 6: case and accents, but "où" -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("École", "ecole"),
        ("Collège LYCÉE", "college lycee"),
        ("STRAẞE", "strasse"),
        ("tu restes où", "tu restes où"),
        ("tu restes OÙ", "tu restes où"),
        ("tu restes ou\u0300", "tu restes où"),  # decomposed input composes first
        ("t'habites où ?", "t'habites où ?"),
        ("tu restes ou tu pars", "tu restes ou tu pars"),
        ("w\u0301h\u0308e\u0303r\u0300e\u0336", "where"),  # Zalgo-style marks
    ],
)
def test_accents_go_except_the_french_where(text: str, expected: str) -> None:
    assert plain(text) == expected


# --- step 7: emoji that stand for words --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("which 🚌 do u catch", "which bus do u catch"),
        ("🏠 addy?", "house addy?"),
        ("ur🏡", "ur house"),
        ("📍 pls", "location pls"),
        ("send 📌", "send location"),
        ("🗺️ me", "map me"),  # with VS16
        ("what 🏫︎", "what school"),  # with VS15
        ("ur 📮 📬 📫", "ur address address address"),
        ("🏘 🚍", "house bus"),
        ("lol 😂", "lol 😂"),
    ],
)
def test_word_emoji_become_words(text: str, expected: str) -> None:
    assert plain(text) == expected


# --- step 8: spaced and dotted letters ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("whats ur p o s t c o d e", "whats ur postcode"),
        ("a.d.d.r.e.s.s", "address"),
        ("ur a.d.d.r.e.s.s. pls", "ur address pls"),
        ("s.u.b.u.r.b", "suburb"),
        ("l.o.c.a.t.i.o.n", "location"),
        ("q u a r t i e r", "quartier"),
        ("s-c-h-o-o-l", "school"),
        ("s_c_h_o_o_l", "school"),
        ("s*c*h*o*o*l", "school"),
        ("s·c·h·o·o·l", "school"),
        ("w\nh\ne\nr\ne", "where"),
        ("what s c h o o l?", "what school?"),
        ("quiz_queen_k w h e r e  d o  u  l i v e  btw", "quiz_queen_k where do u live btw"),
        ("w h e r e  d o  u  l i v e", "where do u live"),
    ],
)
def test_spaced_letters_join(text: str, expected: str) -> None:
    assert plain(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "i am a b",  # a pair alone is ordinary text
        "e.g. this",
        "ab c d",  # c d is only two single letters
        "s.c-h.o",  # mixed separators are not one run
    ],
)
def test_ordinary_text_is_not_joined(text: str) -> None:
    assert plain(text) == text


def test_pairs_join_only_in_a_message_written_spaced() -> None:
    assert plain("p o  s t") == "p o s t"  # double spaces split words, leaving pairs only
    assert plain("d o  u  live") == "d o u live"
    assert plain("w h e r e  d o  u") == "where do u"


# --- step 9: repeats and whitespace ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("whereeeee", "wheree"),
        ("sooooo", "soo"),
        ("addresssss", "address"),
        ("!!!!!", "!!"),
        ("tell meee ur addyyyyy", "tell mee ur addyy"),
        ("  where \t\n  do   u  ", "where do u"),
        ("postcode 3000 in 1000 km", "postcode 3000 in 1000 km"),  # numbers keep their digits
    ],
)
def test_repeats_and_whitespace_collapse(text: str, expected: str) -> None:
    assert plain(text) == expected


# --- leet --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("t'h4b1t3s où", "t'habites où"),
        ("wh3r3 d0 u l1v3", "where do u live"),
        ("m33t 1rl", "meet irl"),
        ("ADDR3SS", "address"),
        ("wot est8 u on", "wot estate u on"),
        ("c u l8r m8", "c u later mate"),
        ("4ddr355", "address"),
        ("wh1ch sk00l", "which skool"),
        ("sk000l", "skool"),
        ("adr3sse", "adresse"),
        ("c'est quoi l'4dresse", "c'est quoi l'adresse"),
        ("$chool", "school"),
        ("@ddress", "address"),
        ("l!ve", "live"),
        ("|ive", "live"),
        ("wh3r3 do u live!", "where do u live!"),
        ("gr8 t00", "grate too"),
    ],
)
def test_leet_is_decoded_inside_words(text: str, expected: str) -> None:
    assert leet(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "12yo",
        "14ans",
        "j'ai 14 ans",
        "im 12",
        "yr7",
        "yr10",
        "f13",
        "13/f",
        "u14s",
        "lvl 12",
        "lvl12",
        "year9",
        "2nd",
        "1st",
        "3pm",
        "6e",
        "10k",
        "at 3:15 on 12/10",
        "mp3",
    ],
)
def test_numbers_ages_and_labels_are_not_leet(text: str) -> None:
    assert leet(text) == plain(text)


def test_leet_is_plain_itself_when_nothing_decodes() -> None:
    for text in ["hey whats up", "hi!! how r u!", "im 12", "yr7 f13"]:
        result = normalise(text)
        assert result.leet is result.plain


def test_leet_decodes_only_the_words_that_need_it() -> None:
    assert leet("im 12yo wh3r3 u l1v3 yr7") == "im 12yo where u live yr7"


# --- API and properties ------------------------------------------------------------------------


def test_normalised_is_frozen() -> None:
    result = normalise("Hi")
    assert result == Normalised("hi", "hi")
    with pytest.raises(AttributeError):
        result.plain = "x"  # type: ignore[misc]


def test_fold_is_the_plain_form() -> None:
    assert fold("Mr_Robbo") == "mr_robbo"
    assert fold("ᴍʀ_ʀᴏʙʙᴏ") == "mr_robbo"
    assert fold("wh3r3") == "wh3r3"


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_normalise_never_raises_and_stays_bounded(text: str) -> None:
    result = normalise(text)
    assert len(result.plain) <= MAX_SCAN * 3
    assert result.plain == result.plain.strip()


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(max_codepoint=0x7F)))
def test_the_ascii_fast_path_agrees_with_the_full_pipeline(text: str) -> None:
    assert plain_ascii(text) == plain_unicode(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab .-_*·\n\t3!où@Éé🏠\u200b\u0301", max_size=60))
def test_the_ascii_fast_path_agrees_on_awkward_ascii(text: str) -> None:
    ascii_only = text.encode("ascii", "ignore").decode()
    assert plain_ascii(ascii_only) == plain_unicode(ascii_only)
    normalise(text)


HOSTILE = [
    "\u0301" * 65536,
    "a" + "\u0301" * 65535,
    "a " * 32768,
    "a.a." * 16384,
    "a" * 65536,
    "\ufdfa" * 65536,  # NFKC expands each to 18 characters
    "📮" * 65536,  # each becomes " address "
    "m8" * 32768,
    "1" * 65536,
    "!a" * 32768,
    ("ｗ\u200bһ\u0301\u0301e 3 ") * 8192,
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda text: repr(text[:6]))
def test_hostile_lines_are_bounded(text: str) -> None:
    """Only the first MAX_SCAN characters can influence the result (time is measured in
    bench/rules.py, not here)."""
    result = normalise(text)
    assert result == normalise(text[:MAX_SCAN])
    assert len(result.plain) <= MAX_SCAN * 3
