"""What people say about their own age: "im 12", "13/f", "year 8", "j'ai 12 ans", "en 5e" — or
about being an adult ("im 32", "dad of two", "I teach year 8").

The minor-whereabouts rule needs a belief about each participant, and the only honest source in
a public room is what they say about themselves. Numbers that are not ages ("12 minutes away",
"lvl 12", "12/10", "ranked 12th"), ages of other people ("my son is 12") and past ages ("I was 12
when…") must not count, so every pattern here looks at the words around the number.

All patterns run on :func:`presencebot.text.normalise`'s ``plain`` form (case-folded, accents
stripped except "où"), are linear (no nested quantifiers) and see at most ``MAX_SCAN`` characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

ADULT_AGE: Final = 18
YOUNGEST: Final = 5
OLDEST: Final = 99


@dataclass(frozen=True, slots=True)
class AgeStatement:
    """A person's statement about themselves: a minor, or an adult."""

    minor: bool
    age: int | None
    """The stated age in years, when a number was given."""
    said: str
    """The words that carried it, for the officer's explanation (at most ~40 characters)."""


# Units and counters that make a number "not an age" when they follow it.
_NOT_AGE_AFTER = (
    r"(?!\s*(?:min|mins|minute|minutes|hr|hrs|hour|hours|sec|secs|second|seconds|day|days|week|weeks"
    r"|month|months|km|k\b|mile|miles|mi\b|m\b|%|/|:|\.\d|,\d|th\b|st\b|nd\b|rd\b|x\b|lvl|level|levels"
    r"|pound|pounds|lbs|kg|kilos?|ft|foot|feet|inch|inches|cm|mm|point|points|pts|kill|kills|win|wins"
    r"|game|games|time|times|am\b|pm\b|o'?clock|dollar|dollars|bucks|quid|euro|euros|followers|subs"
    r"|hours?\s+into|into|on the|in the|out of|more|less|left|away|behind|ahead|down|up\b|diamonds?"
    r"|cards?|packs?|items?|coins?|robux|vbucks|v-bucks|stars?|percent|gb|mb|fps|ping|ms\b"
    r"|sur\s+\d|heures?|h\b|mn\b|jours?|semaines?|mois|euros?|balles|fois|points?))"
)

# Someone else's age ("my son is 12", "she's 14") or a past one ("i was 12 when").
_OTHER_PERSON = re.compile(
    r"(?:\b(?:my|our|his|her|their|ur|your|mon|ma|mes|son|sa|ses|notre)\s+(?:\w+\s+)?"
    r"(?:son|daughter|kid|kids|child|children|boy|girl|brother|bro|sister|sis|cousin|nephew|niece"
    r"|friend|mate|dog|cat|fils|fille|frere|soeur|cousine?|enfants?|neveu|niece|pote|ami|amie|chien|gars|garcon|chum|blonde"
    r"|chat|petit|petite|gosse)s?|\b(?:he|she|they|il|elle|ils|elles))"
    r"(?:\s*(?:is|'s|s|was|turned|turns|just turned|will be|are|were|a|a deja|has|have|aged))?"
    r"\s*(?:only\s+|just\s+|like\s+|nearly\s+)?$"
)
_PAST = re.compile(
    r"\b(?:was|were|used to be|when i was|back when|avais|j'avais|quand j'avais|had)\s*[^.!?]{0,6}$"
    r"|\b(?:depuis|pendant|il y a|ca fait|for|since|over|about|the last|the past|in)\s*$"
)

_AGE_PATTERNS: Final = tuple(
    re.compile(p)
    for p in (
        # im 12 / i'm only 12 / i am 12 / iam 12
        r"\b(?:i'?m|i am|iam|im)\s+(?:only\s+|just\s+|literally\s+|nearly\s+|almost\s+|like\s+|actually\s+|really\s+|rly\s+|acc\s+|tbh\s+)?(\d{1,2})\b"
        + _NOT_AGE_AFTER,
        # 12yo, 13 yo, 12 y/o, 11 years old, 12yrs, 12ans, 14 ans
        r"\b(\d{1,2})\s*(?:yo|y/o|y\.o\.?|yrs?(?:\s*old)?|years?\s*old|year old|ans)\b",
        # 13/f, 15/f, 14/m, 13f, f13, m14
        r"(?:^|\s)(\d{1,2})\s*/?\s*[mf]\b(?!/)",
        r"(?:^|\s)[mf]\s?(\d{2})\b",
        # turning 14, just turned 13
        r"\b(?:turning|turned|just turned|gonna be|going to be|ill be|i'll be|i will be|il be)\s+(\d{1,2})\b"
        + _NOT_AGE_AFTER,
        r"^(\d{1,2})\s+(?:next|in|on|this)\s+(?:month|week|year|june|july|august|september|october|november"
        r"|december|january|february|march|april|may|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b",
        r"^(\d{1,2})\s*(?:\(|!|,\s)",
        r"^(\d{1,2})\s+(?:today|2day|tomorrow|tmrw|now)\b",
        r"^(\d{1,2})a\b",
        # "16 and this is my social life", "14 and my parents...", "33 here", "13 tho"
        r"(?:^|[.!?,;]\s*)(\d{1,2})\s+(?:and|&|n|tho|though|here|btw|lol|haha|rn|now|innit|bruv|mate|ish|yrs?|years|y'?all|ok|so|but|also|et|mdr|ptdr)\b",
        # comma-delimited: "just finished my masters, 24" / "im yaz, 26, i help" / "moi 31"
        r"(?:^|,)\s*(\d{2})\s*(?:,|!|$)",
        r"\bmoi,?\s+(\d{2})(?:\s*ans)?\s*$",
        # age 12, age: 13, my age is 14
        r"\bage\s*(?:[:=]|is)?\s*(\d{1,2})\b" + _NOT_AGE_AFTER,
        # j'ai 12 ans
        r"\bj'?\s?ai\s+(\d{1,2})\s*ans\b",
    )
)

# School years and grades (the speaker's own): year 8, yr7, grade 9, 7th grade, sec 2, en 5e...
_GRADE_PATTERNS: Final = tuple(
    re.compile(p)
    for p in (
        r"\b(?:year|yr|y)\s?(\d{1,2})\b(?!s\b|\s*(?:olds?|old|kids|students|pupils|class(?:es)?\b(?!\s+(?:is|was))))",
        r"\b(?<!passed )(?<!passing )(?:grade|gr)\s?(\d{1,2})\b(?!s\b|\s*(?:piano|violin|viola|cello|guitar|music|theory|singing|drums|flute|clarinet|trumpet|sax|saxophone|ballet|dance|tap|swimming|karate|judo|ukulele|recorder|harp))",
        r"\b(\d{1,2})(?:st|nd|rd|th)\s+(?:grader?|gr|grd)\b",
        r"\b(?:middle|high|elementary|primary)\s?schooler\b",
        r"\b(?:my\s+)?(?:gcse|gcses|sats|junior cert|leaving cert|brevet)\s+year\b|\bits my gcse\b",
        r"\b(?:i'?m|im|i am)\s+(?:in|at)\s+(?:juniors|junior school|infants|infant school)\b",
        r"(?:^|\b(?:je suis|jsuis|chu|chuis|chui|suis|encore|toujours))\s*en\s+(?:primaire|maternelle)\b",
        r"\b(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth)\s+(?:grade|grader)\b",
        r"\b(?:year|grade)\s+(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\b",
        r"(?:^|\bin\s+)s([1-6])\b",
        r"(?:^|\bin\s+)p([1-7])\b",
        r"\b(?:freshman|sophomore|junior|senior)\s+(?:in|at)\s+high\s*school\b",
        r"\b(?:just\s+)?(?:started|starting|start)\s+(?:high school|middle school|secondary|primary|year \d+|grade \d+|yr\s?\d+)\b",
        r"\b(?:doing|sitting|taking|revising for)\s+(?:my\s+)?(?:gcses?|sats|junior cert|leaving cert|highers|nationals|a ?levels|naplan|brevet|bac)\b",
        r"\b(?:1st|2nd|3rd|4th|5th|6th|first|second|third|fourth|fifth|sixth)\s+year\s+(?:in|of|at)\s+secondary\b",
        r"\b(?:sec|secondaire)\s?([1-5])\b",
        r"(?:^|\b(?:je suis|jsuis|j'suis|chuis|chui|chu|suis|moi|toujours|encore|deja|passe|rentre|vais))\s*en\s+(cp|ce1|ce2|cm1|cm2|6e|6eme|5e|5eme|4e|4eme|3e|3eme"
        r"|seconde|2nde|premiere|1ere|terminale|sec\s?[1-5]|[1-6]e annee|sixieme|cinquieme|quatrieme|troisieme)\b",
        r"\b(?:still|i'?m|im|i am)\s+in\s+(?:primary|elementary|middle school|junior high|secondary|high school)\b",
        r"(?:^|\b(?:je suis|jsuis|chu|chuis|suis|moi|toujours|encore))\s*(?:au|a la)\s+(?:college|primaire|ecole primaire|polyvalente|poly|secondaire)\b",
        r"(?:^|\ben\s+|\bau\s+)(?:[1-6])(?:e|eme|re|ere)\s+(?:annee|secondaire)\b",
        r"\b(\d)(?:st|nd|rd|th)\s+class\b",
        r"\b(?:middle school|primary school|elementary school|junior high|first year in secondary"
        r"|year \d+ (?:is|was|maths|science|bio|homework)|secondary school)\b",
    )
)
_QUESTION = re.compile(
    r"\b(?:what|which|wat|wot)\s+(?:year|grade)\b|\b(?:year|grade)\s+(?:r|are)\s+(?:u|you)\b"
)
# "walking to school at 15": an age after "at", only with school life around it.
_AT_AGE = re.compile(
    r"\bat\s+(1[0-7]|[5-9])\b(?!\s*(?:pm|am|h\b|o'?clock|:|\.\d|mins?|minutes|sharp|tonight|today))"
)
_SCHOOL_LIFE = re.compile(r"\b(?:school|class|homework|exams?|mocks|teacher|lessons?|gcses?|sats)\b")
_TEACHER = re.compile(
    r"\b(?:(?:i'?m|im|i am)\s+(?:a|an|the)\s+(?:[\w-]+\s+){0,3}(?:teacher|tutor|teaching assistant|headteacher|principal|lecturer)|i teach|i'?m a teacher|im a teacher|as a teacher|i'?m a tutor|teaching|(?:je suis|jsuis|chu|chuis|suis|comme)\s+(?:prof|professeur|enseignant|enseignante)|enseignant"
    r"|j'?enseigne|my (?:year|grade) \d+s|mes (?:eleves|\d+e)|my (?:students|pupils|kids|son|daughter|children)"
    r"|(?:his|her|their|my (?:son|daughter|kid|brother|sister)(?:'s)?) (?:year|grade|class))\b"
)

# Adult roles: overriding a room's "minors" presumption for the speaker.
_ADULT_ROLES: Final = re.compile(
    r"\b(?:(?:dad|mum|mom|mam|father|mother|parent) of (?:one|two|three|four|five|\d+)"
    r"|(?:i'?m|im|i am) (?:a |an |the )?(?:youth worker|teacher|parent|dad|mum|mom|volunteer|coach|nurse"
    r"|police officer|grandad|grandma|granddad|nan|uncle|aunt|teaching assistant|tutor|social worker)"
    r"|(?:i'?m|im|i am)\s+(?:a|an|the)\s+(?:[\w-]+\s+){1,3}(?:teacher|tutor|teaching assistant|headteacher|head|principal|coach|youth worker|lecturer)\b"
    r"|i teach\b|my (?:son|daughter|kids|children|wife|husband)\b|uni student|at uni\b|my masters"
    r"|je suis (?:prof|professeur|animateur|animatrice|parent|papa|maman|educateur|educatrice)"
    r"|(?:mon fils|ma fille|mes enfants|ma femme|mon mari)\b)"
)


_WORDS: Final = {
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "dix": 10,
    "onze": 11,
    "douze": 12,
    "treize": 13,
    "quatorze": 14,
    "quinze": 15,
    "seize": 16,
    "dix-sept": 17,
    "dix sept": 17,
    "dix-huit": 18,
    "dix huit": 18,
}
_WORD_AGE: Final = re.compile(
    r"\b(?:i'?m|i am|im|iam)\s+(?:only\s+|just\s+)?("
    + "|".join(sorted((w for w in _WORDS if " " not in w), key=len, reverse=True))
    + r")\b(?!\s*(?:min|minutes|hours|times|of|days|weeks|months|km|miles))"
    r"|\b(" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")\s+ans\b"
    r"|^("
    + "|".join(sorted((w for w in _WORDS if " " not in w), key=len, reverse=True))
    + r")\s+(?:and|&|n|tho|here|btw|lol|yo|years|yrs|today|now)\b"
)


def _number_age(text: str) -> AgeStatement | None:
    worded = _WORD_AGE.search(text)
    if worded is not None:
        before = text[max(0, worded.start() - 40) : worded.start()]
        if _OTHER_PERSON.search(before) or _PAST.search(before):
            worded = None
    if worded is not None:
        age = _WORDS[worded.group(1) or worded.group(2) or worded.group(3)]
        return AgeStatement(minor=age < ADULT_AGE, age=age, said=worded.group(0)[:40])
    for pattern in _AGE_PATTERNS:
        for match in pattern.finditer(text):
            before = text[max(0, match.start() - 40) : match.start()]
            if _OTHER_PERSON.search(before) or _PAST.search(before):
                continue
            age = int(match.group(1))
            if re.match(
                r"(?:ill be|i'll be|i will be|il be|turning|gonna be|going to be)\b", match.group(0)
            ) or re.search(r"\bnext\b", match.group(0)):
                age -= 1  # a coming birthday: one year younger today
            if not YOUNGEST <= age <= OLDEST:
                continue
            return AgeStatement(minor=age < ADULT_AGE, age=age, said=match.group(0).strip(" ,.!?;")[:40])
    return None


def _at_age(text: str) -> AgeStatement | None:
    match = _AT_AGE.search(text)
    if match is None or not _SCHOOL_LIFE.search(text):
        return None
    return AgeStatement(minor=True, age=int(match.group(1)), said=match.group(0))


_SOMEONE_ELSES: Final = re.compile(
    r"\b(?:my|his|her|their|our|ur|your|mon|ma|mes|son|sa)\s+(?:\w+\s+)?(?:sister|brother|bro|sis|son|daughter"
    r"|cousin|kid|kids|friend|mate|nephew|niece|child|children|soeur|frere|fils|fille|cousine?)\b[^.!?]{0,20}$"
)


# A youth team's age group: "our u14s", "the under-13s" (U18 and below).
_AGE_GROUP: Final = re.compile(r"\b(?:our|my|the)\s+u-?(\d{1,2})s\b|\bunder\s?-?(\d{1,2})s\b")


def _grade(text: str) -> AgeStatement | None:
    if _TEACHER.search(text):
        return None
    group = _AGE_GROUP.search(text)
    if group is not None and 5 <= int(group.group(1) or group.group(2)) <= ADULT_AGE:
        return AgeStatement(minor=True, age=None, said=group.group(0).strip()[:40])
    for pattern in _GRADE_PATTERNS:
        match = pattern.search(text)
        if match is None:
            continue
        number = next((g for g in match.groups() if g), None)
        if number is not None and number.isdigit() and not 1 <= int(number) <= 13:
            continue
        if pattern is _GRADE_PATTERNS[0] and _QUESTION.search(text):
            continue  # "what year r u in?" asks; it does not tell
        if _SOMEONE_ELSES.search(text[max(0, match.start() - 40) : match.start()]):
            continue  # "my little sister is in year 5"
        return AgeStatement(minor=True, age=None, said=match.group(0).strip()[:40])
    return None


# A cheap first look: without a digit or a word starting like one of these, nothing here can
# match (a set lookup per word is much cheaper than one large regex alternation).
# A number that could be an age or a school year: one or two digits standing on their own, or
# right after the few letters that introduce one ("f13", "yr7", "y8", "gr6", "s2", "sec2").
# Digits inside words and longer numbers ("ollie81", "max2011", "error 403", URL ids) cannot be
# an age, and skipping them spares ~40 patterns on every message that merely has a digit.
_DIGIT: Final = re.compile(
    r"(?<![a-z0-9])\d{1,2}(?!\d)|\b(?:[mfysu]|u-|yr|gr|grade|year|sec|secondaire)\d{1,2}(?!\d)"
)
_AGE_WORDS: Final = frozenset(
    [
        "year",
        "yr",
        "yrs",
        "grade",
        "grader",
        "sec",
        "secondaire",
        "middle",
        "primary",
        "elementary",
        "junior",
        "secondary",
        "under",
        "teach",
        "teaching",
        "dad",
        "mum",
        "mom",
        "mam",
        "father",
        "mother",
        "parent",
        "son",
        "daughter",
        "kids",
        "children",
        "wife",
        "husband",
        "uni",
        "masters",
        "prof",
        "professeur",
        "anim",
        "animateur",
        "animatrice",
        "papa",
        "maman",
        "fils",
        "fille",
        "enfants",
        "femme",
        "mari",
        "youth",
        "volunteer",
        "coach",
        "nurse",
        "police",
        "grandad",
        "grandma",
        "granddad",
        "nan",
        "uncle",
        "aunt",
        "tutor",
        "worker",
        "educateur",
        "educatrice",
        "suis",
        "chu",
        "chuis",
        "jsuis",
        "cp",
        "ce1",
        "ce2",
        "cm1",
        "cm2",
        "seconde",
        "2nde",
        "premiere",
        "terminale",
        "en",
        "s1",
        "s2",
        "s3",
        "s4",
        "s5",
        "s6",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
        "dix",
        "onze",
        "douze",
        "treize",
        "quatorze",
        "quinze",
        "seize",
        "au",
        "college",
        "primaire",
        "poly",
        "polyvalente",
        "age",
        "freshman",
        "sophomore",
        "gcses",
        "gcse",
        "intermediate",
        "p7",
        "y7",
        "y8",
        "y9",
        "y10",
        "p1",
        "p2",
        "p3",
        "p4",
        "p5",
        "p6",
        "started",
        "starting",
        "start",
        "doing",
        "sitting",
        "taking",
        "first",
        "junior",
        "senior",
        "highers",
        "sats",
        "brevet",
        "chui",
        "fifth",
        "sixth",
        "seventh",
        "eighth",
        "ninth",
        "fourth",
        "third",
        "second",
        "tenth",
        "middle",
        "schooler",
        "juniors",
        "infants",
        "gcse",
        "maternelle",
    ]
)


# Each family of patterns runs only when one of its words is in the message: a message that
# merely mentions "school" skips the ~15 number patterns, one with "5 min" skips the roles.
_NUMBER_WORDS: Final = frozenset(w.split()[0].split("-")[0] for w in _WORDS)
_ROLE_WORDS: Final = frozenset(
    [
        "dad",
        "mum",
        "mom",
        "mam",
        "father",
        "mother",
        "parent",
        "parents",
        "teacher",
        "youth",
        "volunteer",
        "coach",
        "nurse",
        "police",
        "grandad",
        "grandma",
        "granddad",
        "nan",
        "uncle",
        "aunt",
        "teaching",
        "tutor",
        "social",
        "headteacher",
        "head",
        "principal",
        "lecturer",
        "teach",
        "son",
        "daughter",
        "kids",
        "children",
        "wife",
        "husband",
        "uni",
        "masters",
        "prof",
        "professeur",
        "animateur",
        "animatrice",
        "papa",
        "maman",
        "educateur",
        "educatrice",
        "fils",
        "fille",
        "enfants",
        "femme",
        "mari",
    ]
)
_GRADE_WORDS: Final = _AGE_WORDS | frozenset(
    [
        "year",
        "yr",
        "grade",
        "gr",
        "grader",
        "grd",
        "middle",
        "high",
        "elementary",
        "primary",
        "schooler",
        "gcse",
        "gcses",
        "sats",
        "junior",
        "leaving",
        "brevet",
        "juniors",
        "infants",
        "infant",
        "freshman",
        "sophomore",
        "senior",
        "secondary",
        "sec",
        "secondaire",
        "primaire",
        "maternelle",
        "college",
        "poly",
        "polyvalente",
        "cp",
        "seconde",
        "premiere",
        "terminale",
        "sixieme",
        "cinquieme",
        "quatrieme",
        "troisieme",
        "annee",
        "class",
        "school",
        "highers",
        "nationals",
        "levels",
        "naplan",
        "bac",
        "under",
    ]
)
_ANY_WORD: Final = _NUMBER_WORDS | _ROLE_WORDS | _GRADE_WORDS
# A number that reads as a school year without a year word: "7th", "5e", "1ere", "y8", "s2", "u14s".
_GRADE_NUMBER: Final = re.compile(
    r"\d(?:st|nd|rd|th|e|eme|ere|re|nde|a)\b|\b(?:[syp]|yr|gr|grd|grade|year|sec|secondaire|u-?)\d"
)
_PUNCTUATION: Final = "?!.,;:'\"()"


def _maybe_age(plain: str) -> bool:
    if _DIGIT.search(plain):
        return True
    return any(word.strip(_PUNCTUATION) in _ANY_WORD for word in plain.split())


def statement(plain: str) -> AgeStatement | None:
    """The speaker's statement about their own age in ``plain`` (normalised text), if any.

    A number takes precedence over a school year; an adult role ("dad of two") counts as adult.
    """
    digits = _DIGIT.search(plain) is not None
    words = {word.strip(_PUNCTUATION) for word in plain.split()}
    if not digits and words.isdisjoint(_ANY_WORD):
        return None
    if digits or not words.isdisjoint(_NUMBER_WORDS):
        found = _number_age(plain)
        if found is not None:
            return found
    if not words.isdisjoint(_ROLE_WORDS):
        role = _ADULT_ROLES.search(plain)
        if role is not None:
            return AgeStatement(minor=False, age=None, said=role.group(0)[:40])
    if not words.isdisjoint(_GRADE_WORDS) or (digits and _GRADE_NUMBER.search(plain) is not None):
        grade = _grade(plain)
        if grade is not None:
            return grade
    return _at_age(plain) if digits else None


_BARE_NUMBER = re.compile(
    r"^\s*(\d{1,2}|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen"
    r"|eighteen|nineteen|twenty|dix|onze|douze|treize|quatorze|quinze|seize)"
    r"(?:\s*(?:ans|yo|y/o|years?|yrs?))?(?:\s*$|\s*[.!,?]|\s+(?:why|lol|u|wbu|hbu|and|&|n|nearly|almost|pk|et|toi|haha|btw|pis|moi|pourquoi|ans)\b)"
)
HOW_OLD: Final = re.compile(
    r"\b(?:how old|hw old|age\?|ur age|your age|asl|quel age|t'as quel age|tu as quel age|quel est ton age)\b"
)


def answer_to_how_old(plain: str) -> AgeStatement | None:
    """A bare number ("15 why", "12") given as the answer to a recent "how old are you?"."""
    match = _BARE_NUMBER.match(plain)
    if match is None:
        return None
    word = match.group(1)
    age = int(word) if word.isdigit() else _WORDS[word]
    if not YOUNGEST <= age <= OLDEST:
        return None
    return AgeStatement(minor=age < ADULT_AGE, age=age, said=match.group(0).strip()[:40])
