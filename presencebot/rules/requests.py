"""Requests for someone's whereabouts, in the forms people type them (English and French).

Four categories, as in the detection policy: ``address`` (home address, street, house number,
postcode), ``location`` (where they live, which town or area, their live location), ``school``
(which school, class, teacher, when they finish, which bus home) and ``meetup`` (meet up, come
over, pick you up).

Each pattern is a plain regular expression over :func:`presencebot.text.normalise` output (``plain``
and ``leet`` forms), written for the *shape* of a request — a question word or an imperative, a
second person, a whereabouts noun — rather than for particular sentences. Patterns are linear
(no nested quantifiers), and the texts they see are bounded by ``MAX_SCAN``.

Three kinds of context turn a match off: other senses of the words (IP/email/server address,
"address the issue"), virtual places (a game's map, spawn, lobby, island — unless the message says
"irl" or the request is inherently real, like a postcode), and talk *about* requests (safety
warnings, "someone asked me where I live", quizzes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from presencebot.rules.prefilter import Prefilter
from presencebot.text import Normalised

CATEGORIES: Final = ("address", "location", "school", "meetup")

YOU = r"(?:u|you|ya|yu|yall|y'all|ye|yah|ru)"  # "ru": "r u" written in spaced letters
YOUR = r"(?:ur|your|yur|yor|yr|ya|you'?re|youre|yer|urr)"
BE = r"(?:r|are|ar|re|'re|is)"
DO = r"(?:do|d|does|did|du)"
WHAT = r"(?:what|wat|wot|wut|wht|whit|whats|what'?s|wats|wots|whts|which|wich|whch|wich)"
WHERE = r"(?:w+h*e+r+e*|whr|wea|whre|wh+e+r+e*abouts|where abouts)"
ADDR = r"(?:address|adress|addres|adres|addy|addie|addr|adr|addresse|addrss|deets)"
STRONG_ADDR = (
    r"(?:post\s?code|postal\s?code|zip\s?code|eircode|house\s?(?:number|no|num|#)|door\s?(?:number|no|num)"
    r"|flat\s?(?:number|no|num)|apartment\s?(?:number|no)|apt\s?(?:number|no)|street\s?(?:name|address)?"
    r"|road\s?name|home\s?address|full\s?address)"
)
LIVE = r"(?:li+v+e*|lyf|li+vi+n+g*|livin')"
AREA = (
    r"(?:town|city|suburb|area|estate|neighbou?rhood|hood|village|end of town|side of town|bit|ends"
    r"|borough|part of (?:town|the city|the town)|stop)"
)


# A cheap first look: text in which no word starts like one of these cannot be (part of) a
# request. Word prefixes and a set lookup per word cost a fraction of one large regex alternation
# (which Python's engine tries at every position), and this runs on every message.
_PREFIXES: Final = frozenset(
    {
        "where",
        "wher",
        "whr",
        "wya",
        "wru",
        "wea",
        "wer",
        "addr",
        "adre",
        "adr",
        "addy",
        "addi",
        "post",
        "zip",
        "eirc",
        "stre",
        "road",
        "hous",
        "door",
        "flat",
        "bloc",
        "scho",
        "skoo",
        "sk00",
        "skul",
        "skl",
        "sch",
        "teac",
        "tuto",
        "clas",
        "bus",
        "town",
        "city",
        "subu",
        "area",
        "esta",
        "ends",
        "hood",
        "vill",
        "bit",
        "part",
        "stop",
        "near",
        "clos",
        "next",
        "loca",
        "loc",
        "pin",
        "map",
        "gps",
        "meet",
        "m33t",
        "meat",
        "hang",
        "come",
        "pick",
        "wait",
        "walk",
        "driv",
        "lift",
        "snea",
        "habi",
        "rest",
        "reste",
        "demeu",
        "ville",
        "coin",
        "quar",
        "rue",
        "code",
        "nume",
        "numb",
        "ecol",
        "coll",
        "lyce",
        "poly",
        "prim",
        "cege",
        "sors",
        "fini",
        "voit",
        "capt",
        "retr",
        "cher",
        "vien",
        "rejo",
        "posi",
        "seco",
        "acad",
        "high",
        "time",
        "when",
        "name",
        "chez",
        "envo",
        "acti",
        "from",
        "spec",
        "whic",
        "what",
        "wat",
        "wot",
        "catc",
        "bahu",
        "proc",
        "pres",
        "loin",
        "rame",
        "racc",
        "recu",
        "pren",
        "heur",
        "rent",
        "home",
        "just",
        "aboi",
        "go",
        "ou",
        "où",
        "kel",
        "quel",
        "live",
        "liv",
        "dee",
        "nom",
        "mais",
        "voir",
        "emme",
        "auto",
        "appa",
        "cycl",
        "bike",
        "grab",
        "get",
        "vers",
        "qui",
        "dira",
        "att",
        "d'o",
        "chil",
        "link",
        "fanc",
        "take",
        "swin",
        "pop",
        "kick",
        "toge",
        "whit",
        "bala",
        "lign",
        "alon",
        "pare",
        "seul",
        "voie",
        "croi",
        "too",
        "also",
        "fetc",
        "must",
        "prob",
        "bet",
        "aill",
        "alle",
        "dois",
        "vis-",
        "wbu",
        "hbu",
        "pour",
        "anyo",
        "anyb",
        "any1",
        "file",
        "lach",
        "renc",
        "nous",
        "deva",
        "lets",
        "let'",
        "wann",
        "shal",
        "tell",
        "sort",
        "kart",
        "voya",
        "s're",
        "seule",
    }
)


# Short words that are cues only on their own ("is it st john's?"), not as the start of others.
_WHOLE_WORDS: Final = frozenset({"st", "saint"})


def _cue(word: str) -> bool:
    word = word.strip("?!.,;:'\"()@#*")
    if "'" in word:  # "j'habite", "t'es", "l'ecole": the word after the elision
        word = word.rsplit("'", 1)[1]
    return word[:4] in _PREFIXES or word[:3] in _PREFIXES or word[:2] in _PREFIXES or word in _WHOLE_WORDS


def maybe(text: str) -> bool:
    """Whether ``text`` (normalised) has any word that could start a request pattern."""
    return any(_cue(word) for word in text.split())


FOCUS_CHARS: Final = 600
_FOCUS_WORDS: Final = 12


def focus(text: str) -> str:
    """For a long message, only the words around cues, at most ``FOCUS_CHARS`` characters.

    A chat request is a sentence, not a page: matching ~110 patterns over the windows around
    the words that could start one keeps the work per message small however long the text (a
    64 KiB flood of "where do u live"), while a request anywhere in an ordinary long message
    is still seen. Windows are joined with " . " so that no pattern spans two of them.
    """
    if len(text) <= FOCUS_CHARS:
        return text
    words = text.split()
    keep: list[tuple[int, int]] = []
    for index, word in enumerate(words):
        if _cue(word):
            start, end = max(0, index - _FOCUS_WORDS), min(len(words), index + _FOCUS_WORDS + 1)
            if keep and start <= keep[-1][1]:
                keep[-1] = (keep[-1][0], end)
            else:
                keep.append((start, end))
    return " . ".join(" ".join(words[a:b]) for a, b in keep)[:FOCUS_CHARS]


# Looks like a question about whereabouts: remembered even when nobody is known to be a minor yet.
QUESTION_HINT: Final = re.compile(
    r"where|wher\b|\bwer\b|whr|wya|address|addy|postcode|zip|school|skool|live\b|town|city|area|suburb"
    r"|street|meet|habite|adresse|ecole|college|ville|quartier|o[uù]\b|\?"
)


SCHOOL_TALK: Final = re.compile(
    r"\b(?:school|skool|class|classes|lesson|lessons|homework|hw|exams?|mocks|test|teacher|year \d+|grade \d+"
    r"|bus|ecole|college|lycee|cours|classe|devoirs|brevet|bac|prof|poly|polyvalente|primaire|sec \d)\b"
)
STREET_TALK: Final = re.compile(
    r"\b(?:road|rd|street|st|avenue|ave|lane|close|drive|crescent|way|court|terrace|rue|chemin|boulevard|allee|house"
    r"|flat|apartment|appart)\b"
)


@dataclass(frozen=True, slots=True)
class Pattern:
    category: str
    regex: re.Pattern[str]
    strong: bool = False
    """A strong request is inherently about the real world (a postcode, "irl"): no game veto.
    School questions are never vetoed by games in general, only by magic schools (Wizard101)."""
    follow_up: bool = False
    contextual: bool = False
    needs: re.Pattern[str] | None = None
    """Only a request when the recent room talk matches this: "tu finis à quelle heure ?" after
    someone mentions the brevet, "what number" after someone names their road."""
    """Also dropped when the previous messages are about a game ("whats the house number" right
    after "i built a mansion in bloxburg"); other non-strong patterns only look at their own
    message, so a real request in a busy gaming room is still seen."""
    """Only a request when it follows an earlier request by the same person to the same target."""


def _p(
    category: str,
    regex: str,
    *,
    strong: bool = False,
    follow_up: bool = False,
    contextual: bool = False,
    needs: re.Pattern[str] | None = None,
) -> Pattern:
    return Pattern(category, re.compile(regex), strong, follow_up, contextual, needs)


PATTERNS: Final[tuple[Pattern, ...]] = (
    # --- address ---------------------------------------------------------------------------------
    _p(
        "address",
        rf"\b{YOUR}\s+(?:home\s+|full\s+|real\s+|house\s+|actual\s+|exact\s+|irl\s+|new\s+|current\s+|proper\s+|postal\s+)?"
        rf"(?:{ADDR}|{STRONG_ADDR}|zip|street|road)\b(?!\s*(?:ip|e-?mail|mail|server|wallet|mac|of the)\b)",
        strong=True,
    ),
    _p(
        "address",
        rf"\b(?:give|send|drop|tell|dm|pm|text|gimme|gimmie|need|want|share|type|post|put|write)"
        rf"\s+(?:me\s+|us\s+)?(?:the\s+|ur\s+|your\s+)?{STRONG_ADDR}\b",
        strong=True,
    ),
    _p(
        "address",
        rf"\b(?:give|send|drop|tell|dm|pm|text|gimme|gimmie|share|type|write)\s+(?:me\s+|us\s+)?"
        rf"{YOUR}\s+(?:{ADDR}|{STRONG_ADDR})\b",
        strong=True,
    ),
    _p(
        "address",
        rf"\b{WHAT}\s+(?:is\s+)?(?:the\s+)?(?:{STRONG_ADDR}|street|road|block|building|avenue|lane)\b"
        rf"(?!\s+(?:in|on)\s+(?:the\s+)?(?:game|map|server))",
        contextual=True,
    ),
    _p(
        "address",
        rf"\b{WHAT}\s+(?:street|road|block|avenue|lane|building)\s+{DO}\s+{YOU}\s+live\b",
        strong=True,
    ),
    _p(
        "address",
        r"^(?:house\s+)?(?:addy|address|adress|postcode|post code|zip code|eircode)\b[\s?!.]*"
        r"(?:pls|plz|please|now|then|tho|\?)*[\s?!.]*$",
    ),
    _p("address", r"\bhouse\s+(?:addy|address|adress)\b"),
    _p(
        "address",
        r"\b(?:just|only|and|what about|be more specific)\s+(?:the|ur|your)?\s*(?:number|house number"
        r"|door number|road|street|road name|street name|postcode)\b",
        follow_up=True,
    ),
    _p(
        "address",
        rf"\b(?:what|which|wat|wot)\s+(?:number|no|num)\s+is\s+{YOUR}\s+(?:house|flat|door|apartment|apt|home)\b",
        strong=True,
    ),
    # French
    _p(
        "address",
        r"\b(?:juste|seulement|et)\s+(?:le|ton|ta)\s+(?:numero|rue|code postal|adresse)\b",
        follow_up=True,
    ),
    _p(
        "address",
        r"\b(?:ton|ta|votre|t)\s+(?:adresse|adress|adresse postale|adr|addresse|code postal"
        r"|rue|numero de (?:rue|maison|porte)|domicile)\b(?!\s*(?:mail|e-?mail|ip|courriel|du serveur|web|de jeu))",
        strong=True,
    ),
    _p("address", r"\b(?:quelle|kelle|quel)\s+rue\b", strong=True),
    _p(
        "address",
        r"\b(?:street|road|rue)\s+(?:n|and|&|et)\s+(?:house|door|flat)?\s*(?:number|no|num|numero)\b",
        strong=True,
    ),
    _p("address", r"\bquel(?:le)?\s+(?:code\s+postal|adresse|numero de (?:rue|maison))\b", strong=True),
    # --- location --------------------------------------------------------------------------------
    _p(
        "location",
        rf"\b{WHERE}\s+(?:{DO}\s+|{BE}\s+)?{YOU}\s+(?:{LIVE}|stay|staying|located|reside)\b",
        strong=True,
    ),
    _p("location", rf"\b{WHERE}\s+(?:{DO}\s+)?{YOU}\s+(?:{LIVE}|stay)\b", strong=True),
    _p(
        "location",
        rf"\b{WHERE}\s+(?:{BE}\s+)?{YOU}\s+(?:rn|right now|now|atm|at the moment|at\b)"
        r"(?!\s+(?:in|on)\s+(?:the\s+)?(?:game|map|dungeon|lobby|server))",
        contextual=True,
    ),
    _p("location", r"\b(?:wya|wru|where ya at|where u at|where you at)\b", contextual=True),
    _p(
        "location",
        rf"\b{WHERE}\s+(?:{BE}\s+)?{YOU}\s+(?:from|frm)\b(?!\s+(?:in|on)\s+(?:the\s+)?(?:game|map))",
    ),
    _p(
        "location",
        r"\bwhereabouts\b(?!\s+(?:in the (?:game|map)|does|did|is|are (?:they|he|she)))|\bwhere\s+abouts\s+in\s+[a-z]+",
        strong=True,
    ),
    _p("location", rf"\b{WHAT}\s+(?:{AREA})\b(?!\s+hall)[^.?!]{{0,30}}\b(?:{YOU}|{YOUR})\b"),
    _p("location", rf"\b{WHAT}\s+(?:{AREA})\b(?!\s+hall)", follow_up=True),
    _p("location", rf"\b{WHAT}\s+part\s+of\s+(?:town|the city|[a-z]+\s+{DO}\s+{YOU}\s+live)\b", strong=True),
    _p(
        "location",
        rf"\b(?:{BE}\s+)?{YOU}\s+(?:live\s+)?(?:anywhere near|somewhere near|near|close to|nearby|around|live in|from near)\s+"
        r"(?!(?:me|here|the (?:game|map|spawn|base|portal))\b)[a-z]",
    ),
    _p(
        "location", rf"\b(?:near|close to|next to)\s+{YOUR}\s+(?:house|home|place|flat|school)\b", strong=True
    ),
    _p(
        "location",
        rf"\b(?:send|drop|share|give|post|dm|gimme)\s+(?:me\s+|us\s+)?(?:{YOUR}\s+|a\s+|the\s+)?"
        r"(?:live\s+|current\s+|exact\s+)?(?:location|loc|pin|gps|whereabouts|maps? location)\b",
        strong=True,
    ),
    _p(
        "location",
        rf"\b(?:turn|put|switch)\s+(?:on\s+)?{YOUR}\s+(?:snap\s?map|location|loc|gps|find my)\b",
        strong=True,
    ),
    _p(
        "location",
        rf"\b(?:see|know|find|track)\s+(?:exactly\s+)?{WHERE}\s+{YOU}\s+(?:{BE}|live|r|are)\b",
        strong=True,
    ),
    _p(
        "location",
        r"^(?:ur\s+|your\s+)?(?:location|loc|live location|pin)\s*(?:pls|plz|please|\?|now)+[\s?!.]*$",
    ),
    _p(
        "location",
        r"\btu\s+(?:vis|demeures|reste|restes)\s+où\b|\btu\s+(?:vis|demeures|restes)\s+ou\s*(?:[?!.]|$"
        r"|exactement|ca|ça|stp|svp|maintenant|la)",
        strong=True,
    ),
    _p(
        "location",
        r"\bt'?\s?es\s+o[uù]\b(?!\s+(?:sur|dans)\s+(?:la\s+|le\s+)?(?:map|game|partie|jeu|serveur|carte))",
    ),
    _p(
        "location",
        r"\b(?:which|what|wat|wot)\s+(?:part|bit|side|end)\b(?!\s+of\s+the\s+(?:game|map|song|book|speech"
        r"|address|test|question|level|film|movie|show))",
        follow_up=True,
    ),
    _p(
        "location",
        r"\b(?:which|what|wat|wot)\s+part\s+of\s+(?!the\s+(?:game|map|song|book|speech|address|test|question"
        r"|level|film|movie|show|day|year)\b)(?!(?:it|that|this|the)\b)[a-z]+",
    ),
    _p(
        "location",
        rf"\b(?:{YOU}'?re|youre|ur|u r|bet\s+{YOUR})\s+(?:near|close to|next to|by)\s+(?!me\b|here\b)[a-z]",
    ),
    # French
    _p(
        "location",
        r"\b(?:t'?\s?|tu\s+)habites?\s*(?:ou|où)\b|\bo[uù]\s+(?:est-ce que\s+|est ce que\s+|ce que\s+)?"
        r"(?:tu\s+|t'?\s?)(?:habites?|vis|restes|demeures)\b",
        strong=True,
    ),
    _p(
        "location",
        r"\b(?:tu\s+(?:vis|habites?|restes|demeures|es)|t'?\s?es|t'?\s?habites?|tu\s+viens)\s+"
        r"(?:dans\s+|de\s+|a\s+)?(?:quelle|quel|kelle|kel)\s+(?:ville|coin|quartier|village|banlieue|secteur|bled|rue)\b",
        strong=True,
    ),
    _p(
        "location",
        r"\b(?:quelle|quel|kelle|kel)\s+(?:ville|coin|quartier|village|banlieue|secteur|bled)\b",
        follow_up=True,
    ),
    _p(
        "location",
        r"\b(?:quelle|quel|kelle|kel)\s+(?:ville|coin|quartier|village|banlieue|secteur|bled)\b"
        r"[^.?!]{0,30}\b(?:tu|t'|toi)\b",
    ),
    _p(
        "location",
        r"\b(?:envoie|envoi|donne|partage|active|allume|mets)(?:[-\s]+moi)?\s+(?:ta|ton)\s+"
        r"(?:localisation|location|position|loc|snap\s?map|geoloc|gps)\b",
        strong=True,
    ),
    _p(
        "location",
        r"\b(?:t'?\s?es(?:-tu)?|tu\s+es|tu\s+habites?|t'?\s?habites?|tu\s+vis|tu\s+restes)\s+(?:proche|pres|pas loin|a cote|loin)\s+"
        r"(?:de|d')",
    ),
    _p(
        "location",
        r"\b(?:ta\s+maison|chez\s+toi|ton\s+appart|ta\s+rue)\s+(?:elle\s+|il\s+|c'?\s?)?(?:est\s+)?o[uù]\b|\b(?:elle\s+est|c'?est)\s+o[uù]\s+(?:ta\s+maison|chez\s+toi|ton\s+appart)\b",
        strong=True,
    ),
    _p(
        "location",
        r"\b(?:t'?\s?es(?:-tu)?|tu\s+es|tu\s+habites?|tu\s+vis|tu\s+restes)\s+(?:vers|dans le coin de|du cote de)\s+[a-z]",
    ),
    # --- school ----------------------------------------------------------------------------------
    _p(
        "school",
        rf"\b{WHAT}\s+(?:school|skool|skl|skul|schol|skewl|cchool|primary|secondary|high\s?school|middle school|college"
        r"|elementary|academy|sixth form|grammar|comp|junior\s?school|infant school|prep school)\b(?!\s+(?:subject|subjects|like|is (?:he|she|they)"
        r"|are (?:they|he|she)|do (?:they|ur kids|your kids)|does (?:he|she)))",
    ),
    _p(
        "school",
        rf"\b{YOUR}\s+(?:school|skool|skul|primary|secondary|academy|high school)\s*(?:'?s)?\s*"
        r"(?:called|name|named)\b",
    ),
    _p("school", rf"\bname of\s+(?:{YOUR}|the)\s+(?:school|skool|academy|primary)\b"),
    _p("school", rf"\b{WHERE}\s+(?:{DO}\s+)?{YOU}\s+go\s+to\s+(?:school|skool)\b", strong=True),
    _p(
        "school",
        rf"\b(?:who'?s|whos|who is|who r|who are|whats|what'?s|wots)\s+{YOUR}\s+(?:[a-z]+\s+)?(?:teacher|tutor"
        r"|form tutor|head\s?teacher|principal|homeroom|class teacher)(?:s|'s)?\b",
    ),
    _p("school", rf"\b{WHAT}\s+class\s+{BE}\s+{YOU}\s+in\b"),
    _p(
        "school",
        rf"\b(?:what time|when|wat time|wot time)\s+(?:{DO}|does|will|{BE})\s+{YOUR}\s+(?:school|skool|bus|class)"
        r"\s+(?:finish|get out|let out|leave|end|come out|finishes|lets out|ends|start|starts)\b",
    ),
    _p(
        "school",
        rf"\b(?:what time|when|wat time|wot time)\s+(?:(?:{DO}|does|will|{BE})\s+)?{YOU}"
        r"\s+(?:finish|get out|let out|leave|end|come out|get home|get off|finishes|lets out|ends)\b"
        r"(?=[^.?!]{0,40}\b(?:school|skool|class|bus|usually|today|tomorrow|tmrw|tmr|2moro)\b)",
    ),
    _p(
        "school",
        rf"\b(?:what time|when|wat time|wot time)\s+(?:(?:{DO}|does|will|{BE})\s+)?{YOU}"
        r"\s+(?:finish|get out|let out|finishes)\b",
        follow_up=True,
    ),
    _p(
        "school",
        rf"\b{WHAT}\s+(?:number\s+)?(?:bus|train|tram|coach)\b[^.?!]{{0,40}}\b(?:home|school|skool)\b",
        strong=True,
    ),
    _p("school", r"\bschool\s+which\s+one\b"),
    _p("school", rf"\b(?:{DO}\s+)?{YOU}\s+go\s+to\s+(?:st\.?|saint|sainte?)\s+[a-z]+", strong=True),
    _p(
        "school",
        rf"\b(?:{DO}\s+)?{YOU}\s+go\s+to\s+[a-z]+\s+(?:high|academy|primary|school|college|secondary"
        r"|elementary|middle|grammar)\b",
        strong=True,
    ),
    _p(
        "school",
        r"\b(?:just|only|and|what about)\s+(?:the|ur|your)\s+(?:name of the school|school name|school)\b",
        follow_up=True,
    ),
    _p(
        "school",
        rf"\b(?:what'?s|whats|wats|wots|wuts)\s+{YOUR}\s+(?:school|skool|primary|academy|college|high school)\b(?!\s+like)",
    ),
    _p(
        "school",
        rf"\b(?:is|r|are)\s+{YOUR}\s+(?:school|skool|primary|academy|college)\s+(?:the|near|by|on|in|at|called|next)\b",
    ),
    _p("school", rf"\b{YOU}\s+go\s+to\s+the\s+one\s+(?:on|by|near|in|at|next)\b"),
    _p(
        "school",
        rf"\b{YOU}\s+(?:walk|go|get|come|cycle|bike)\s+home\s+(?:alone|by\s+(?:urself|yourself|ya self)|on\s+{YOUR}\s+own)",
    ),
    # French
    _p(
        "school",
        r"\b(?:quel|quelle|kel|kelle)\s+(?:ecole|college|lycee|polyvalente|poly|primaire|cegep"
        r"|etablissement|bahut)\b(?!\s+(?:il|elle|ils|elles)\b)|\bdans\s+quelle\s+classe\b|\bclasse\s+de\s+quel(?:le)?\s+(?:prof|professeur|professeure|maitresse|maitre|enseignant)\b",
    ),
    _p(
        "school",
        r"\b(?:sors|finis|termines|quittes)\s+(?:a|à)\s+quelle\s+heure\b[^.?!]{0,30}\b(?:ecole|college|lycee"
        r"|cours|classe)\b",
    ),
    _p(
        "school",
        r"\b(?:ton|ta)\s+(?:ecole|college|lycee|poly|polyvalente|bahut)\s+(?:c'?est|cest|s'appelle|elle s'appelle)",
    ),
    _p(
        "school",
        r"\b(?:c'?\s?est\s+quoi|c\s+quoi|c\s+koi|cest\s+quoi|quel\s+est|quelle\s+est|c'?est\s+lequel"
        r"|c'?est\s+laquelle)\s+(?:ton|ta)\s+(?:ecole|college|lycee|bahut|poly|polyvalente|primaire"
        r"|etablissement|classe|prof)\b",
    ),
    _p(
        "school",
        r"\b(?:finis|sors|termines|quittes)\b[^.?!]{0,25}\b(?:ecole|college|lycee|cours|classe)\b[^.?!]{0,15}"
        r"\bquelle\s+heure\b",
    ),
    _p(
        "school",
        r"\bquel(?:le)?\s+(?:bus|autobus|car|tram|metro|train|ligne)\b[^.?!]{0,30}\b(?:rentrer|maison|chez toi|ecole"
        r"|college|lycee)\b",
        strong=True,
    ),
    _p(
        "school",
        r"\bnom\s+de\s+(?:ton|ta)\s+(?:prof|professeur|professeure|enseignant|enseignante|ecole|college|lycee|poly|polyvalente|maitresse|maitre)\b",
    ),
    _p(
        "school",
        r"\b(?:t'?\s?es|tu\s+es|t'?es-tu|es-tu|tu\s+vas|vas-tu)\b[^.?!]{0,20}\b(?:a\s+la|au|a\s+l')\s*(?:polyvalente|poly|ecole|college|lycee|primaire|ecole secondaire)\b",
    ),
    _p(
        "school",
        r"\bc'?\s?est\s+qui\s+(?:ton|ta)\s+(?:prof|professeur|professeure|maitresse|maitre|instit|institutrice|instituteur|enseignant|enseignante)\b",
    ),
    _p(
        "school",
        r"\b(?:ton|ta)\s+(?:prof|professeur|professeure|maitresse|maitre|instit)\s+(?:principale?|c'?\s?est qui|s'appelle comment)\b",
    ),
    # --- meetup ----------------------------------------------------------------------------------
    _p(
        "meetup",
        r"(?<!nice to )(?<!good to )(?<!glad to )(?<!great to )(?<!lovely to )(?<!pleasure to )"
        r"\b(?:meet|meat|meett)\s+(?:up|me|u|you|ya|irl|in person|in real life|somewhere|at|after|before"
        r"|tomorrow|today|tonight|this|on|sometime|outside|by|near|then)\b"
        r"(?![^.?!]{0,25}\b(?:vc|voice|discord|spawn|nether|portal|lobby|hub|server|in game|in-game|online"
        r"|realm|island|base|dungeon|in the game|on the map|minecraft|roblox|fortnite|bloxburg|adopt me|zoom"
        r"|teams|call)\b)",
    ),
    _p("meetup", r"\b(?:meet|meat)\s+(?:up\s+)?(?:irl|in person|in real life)\b", strong=True),
    _p(
        "meetup",
        r"\bhang(?:\s*out)?\s+(?:irl|in person|in real life|at (?:mine|my)|this weekend|after school"
        r"|tomorrow|sometime|one day|together)\b",
        strong=True,
    ),
    _p(
        "meetup",
        r"\bcome\s+(?:over|round|around)\b(?![^.?!]{0,25}\b(?:island|base|server|world|realm|game"
        r"|adopt me|bloxburg|roblox|minecraft|dodo|voice|vc|channel|discord|call|stream|twitch|lobby)\b)",
    ),
    _p(
        "meetup",
        r"\bcome\s+to\s+(?:my|mine)\s*(?:house|place|flat|room|studio|garage|car)?\b"
        r"(?![^.?!]{0,25}\b(?:in (?:adopt me|bloxburg|roblox|minecraft|the game|game)|island|server|world|realm)\b)",
    ),
    _p("meetup", rf"\bpick\s+{YOU}\s+up\b", strong=True),
    _p("meetup", rf"\b(?:wait|be waiting)\s+(?:for\s+{YOU}\s+)?outside\s+{YOUR}\b", strong=True),
    _p("meetup", rf"\b(?:walk|drive|take)\s+{YOU}\s+home\b|\bgive\s+{YOU}\s+a\s+lift\b", strong=True),
    _p("meetup", r"\bsneak\s+out\b", strong=True),
    _p(
        "meetup",
        r"\bon\s+s(?:e\s+|'\s?)(?:voit|voie|voyait|verrait|capte|captait|retrouve|retrouvait|rejoint|rejoignait|rencontre|capt|rejoins|croise|donne rdv)\b"
        r"(?!\s+(?:sur|en)\s+(?:discord|vocal|ligne|fortnite|le serveur|minecraft|roblox|la game))",
        contextual=True,
    ),
    _p(
        "meetup",
        r"\bcatch\s*up\s+(?:this\s+(?:arvo|afternoon|morning|evening|weekend|week)|at|tomorrow|tonight|after"
        r"|irl|in person|sometime|somewhere|on (?:the )?(?:weekend|saturday|sunday))\b",
    ),
    _p("meetup", r"\b(?:come|cum)\s+(?:hang|chill|hang out|kick it|see me|meet me|visit)\b"),
    _p(
        "meetup",
        r"\bcome\s+(?:up|down|round|over|by)\s+(?:sometime|some time|one day|this|tomorrow|tonight|on|to mine|to my)\b",
    ),
    _p(
        "meetup",
        rf"\b(?:i|we|my (?:bro|brother|mum|mom|dad|mate))\s+(?:can|could|will|'ll|ll)\s+(?:drive|give)\s+{YOU}\b(?!\s+(?:crazy|mad|nuts|up))",
    ),
    _p(
        "meetup",
        r"\b(?:grab|get)\s+(?:a\s+|some\s+)?(?:milkshake|coffee|drink|bite|food|pizza|burger|ice ?cream|bubble tea|boba|snack|maccies|mcdonalds|maccas|lunch|dinner|breakfast)s?\b[^.?!]{0,25}\b(?:together|with me|w me|with us)\b",
    ),
    _p(
        "meetup",
        r"\b(?:want|wanna|u want|do u want|want me)\s+to\s+(?:grab|get)\s+(?:a\s+)?(?:milkshake|coffee|drink|bite|food|pizza|burger|ice ?cream|bubble tea|boba|snack|maccies|mcdonalds|maccas|lunch|dinner)\b",
    ),
    _p("meetup", rf"\bcome\s+(?:get|grab|collect|fetch)\s+{YOU}\b", strong=True),
    # French
    _p(
        "meetup",
        r"\b(?:venir|viens|vienne|viendrai|passer|passe|passerai|vais|aille|aller|irai)\s+te\s+(?:chercher|prendre|voir|recuperer|raccompagner)\b"
        r"|\bje\s+te\s+(?:ramene|raccompagne|recupere)\b",
        strong=True,
    ),
    _p(
        "meetup",
        r"\b(?:venir|viens(?:-tu)?|venez)\s+chez\s+(?:moi|nous)\b|\brejoins[- ]moi\b|\bon\s+se\s+voit\s+irl\b",
        strong=True,
    ),
    _p(
        "meetup",
        r"\bon\s+(?:pourrait|peut|devrait|va|pourra)\s+se\s+(?:voir|capter|retrouver|rejoindre|rencontrer)\b"
        r"|\b(?:pourrait|peut|pourrions|devrait|pourra)-on\s+se\s+(?:voir|capter|retrouver|rejoindre|rencontrer)\b",
        strong=True,
    ),
    _p("meetup", r"\bje\s+t'?\s?(?:emmene|amene|invite)\s+(?:au|a|chez|manger|voir)\b"),
    _p("meetup", r"\b(?:venir|viens|passer|passe|aller|vais)\s+chez\s+toi\b", strong=True),
    _p(
        "location",
        r"\btu\s+(?:vis|demeures|restes)\s+ou\s+toi\b|\bt'?\s?(?:es\s+)?o[uù]\s+(?:exactement|exact|la|toi)\b",
        strong=True,
    ),
    _p(
        "location",
        r"\bt'?\s?(?:es\s+)?d'?\s?o[uù]\b(?!\s+(?:sur|dans)\s+(?:la\s+|le\s+)?(?:map|game|jeu|serveur))",
    ),
    _p(
        "location",
        r"\b(?:tu|t'|t|toi)\b[^.!]{0,30}\b(?:quelle|quel|kelle|kel)\s+(?:ville|coin|quartier|village|banlieue|secteur|bled)\b",
    ),
    _p(
        "location",
        r"\b(?:c'?\s?est\s+quoi|c\s+koi|c\s+quoi|cest\s+quoi|quelle\s+est|quel\s+est)\s+(?:ta|ton)\s+(?:ville|quartier|village|coin|secteur|bled)\b",
        strong=True,
    ),
    _p(
        "address",
        r"\b(?:c'?\s?est\s+quoi|c\s+koi|c\s+quoi|cest\s+quoi|quelle\s+est|quel\s+est)\s+(?:ta|ton)\s+(?:rue|numero)\b",
        strong=True,
    ),
    _p(
        "meetup",
        r"\bje\s+t'?\s?attend(?:s|rai)?\s+(?:devant|a la sortie|a cote|pres|apres|au|a l')",
        strong=True,
    ),
    _p("location", r"\bwhere\s?abouts\s+(?:r|are|do|d)\s+(?:u|you|ya|ye)\b"),
    _p(
        "location",
        rf"\b(?:closest|nearest)\s+(?:train\s+|tube\s+|bus\s+|subway\s+|metro\s+|tram\s+)?(?:station|stop)\s+(?:to|near|for)\s+(?:{YOU}|{YOUR}\s+(?:house|place|home))\b",
        strong=True,
    ),
    _p(
        "location",
        rf"\b{WHAT}\s+(?:suburb|town|city|estate|neighbou?rhood|village|hood|ends|part of town)\b(?!\s+(?:hall|is|was|are|were)\b)[^.!]{{0,20}}(?:\?|\btho\b|\bthough\b)",
    ),
    _p(
        "meetup",
        r"\b(?:meet(?:ing)?|meat|hang(?:ing)?(?:\s*out)?|chill(?:ing)?|link(?:ing)?(?:\s*up)?|catch(?:ing)?\s*up|kick it|get together|see each other)\s+(?:up\s+)?(?:irl|in person|in real life|sometime|some time|one day|this (?:weekend|week|arvo|afternoon|evening|saturday|sunday|friday)|on (?:the )?(?:weekend|saturday|sunday|friday)|tomorrow|tonight|after school|after (?:ur|your) \w+|saturday|sunday|friday|at (?:mine|my|the|ur|your|[a-z]+'s))\b",
    ),
    _p("meetup", r"\bfancy\s+(?:meeting|a meet|hanging|catching up|a walk|a coffee|a milkshake)\b"),
    _p("meetup", rf"\b(?:i|we)\s+(?:could|can|will|'ll|ll|would)\s+take\s+{YOU}\s+(?:to|out)\b", strong=True),
    _p(
        "meetup",
        rf"\b(?:come|pop|swing)\s+(?:to|round|over to|by)\s+(?:yours|{YOUR}\s+(?:place|house|home|flat))\b",
        strong=True,
    ),
    _p(
        "location",
        rf"\b(?:{BE}\s+)?{YOU}\s+in\s+(?!(?:the|a|an|my|ur|your|vc|class|school|bed|game|lobby|call|year|grade|there|here|on|it|that|this|trouble|love|charge)\b)(?!(?:australia|england|scotland|wales|ireland|uk|usa|us|america|canada|france|belgium|quebec|ontario|nsw|queensland|victoria|texas|california|europe|asia)\b)[a-z]+\s+(?:too|as well|aswell|also)\s*\?",
    ),
    _p(
        "location",
        rf"\b(?:closest|nearest)\s+(?:[a-z]+\s+)?(?:city|town|suburb|shops?|mall|park|beach|village)\s+(?:to|near|for)\s+(?:{YOU}|{YOUR}\s+(?:house|place|home))\b",
        strong=True,
    ),
    _p("address", rf"\b{WHAT}\s+(?:number|no|num)\s+(?:house|flat|door|apartment|apt)\b", strong=True),
    _p(
        "location",
        r"\b(?:dis|donne|envoie|balance)[-\s]+moi\s+(?:juste\s+|seulement\s+)?(?:ta|ton)\s+(?:ville|quartier|village|coin|secteur)\b",
        strong=True,
    ),
    _p(
        "address",
        r"\b(?:dis|donne|envoie|balance)[-\s]+moi\s+(?:juste\s+|seulement\s+)?(?:ta|ton)\s+(?:rue|adresse|code postal|numero)\b"
        r"(?!\s*(?:mail|e-?mail|courriel|ip|de tel|de telephone|snap|insta))",
        strong=True,
    ),
    _p(
        "school",
        r"\b(?:dis|donne)[-\s]+moi\s+(?:juste\s+|seulement\s+)?(?:ton|ta)\s+(?:ecole|college|lycee|poly|polyvalente|bahut)\b",
        strong=True,
    ),
    _p(
        "school",
        r"\btu\s+(?:finis|sors|termines)\s+(?:les cours\s+|l'?ecole\s+)?(?:a|à)\s+quelle\s+heure\b",
        needs=SCHOOL_TALK,
    ),
    _p(
        "school",
        rf"\b(?:what time|when|wat time|wot time)\s+(?:(?:{DO}|does|will|{BE})\s+)?{YOU}\s+(?:finish|get out|let out|finishes)\b",
        needs=SCHOOL_TALK,
    ),
    _p(
        "location",
        rf"\b(?:(?:{BE}\s+)?{YOU}|ur|youre|you're|u r)\s+(?:home\s+(?:alone|by\s+(?:urself|yourself|ur self))|alone\s+(?:at\s+home|rn|now|tonight|in the house)|by\s+(?:urself|yourself)\s+(?:at home|rn|now|tonight))\b",
        strong=True,
    ),
    _p(
        "location",
        rf"\b(?:r|are|is)\s+{YOUR}\s+(?:parents|mum|mom|mam|dad|family|folks|mum and dad|mom and dad)\s+(?:home|in|out|away|there|around)\b",
        strong=True,
    ),
    _p(
        "location",
        r"\b(?:t'?\s?(?:es(?:-tu)?\s+)?|tu\s+es\s+)(?:tout\s+|toute\s+)?seule?\s+(?:chez\s+(?:toi|vous)|a\s+(?:la\s+)?maison)|\btes\s+parents\s+(?:sont|sont-ils)\s+(?:la|partis|pas la|sortis)|\btes\s+parents\s+rentrent\s+quand\b",
        strong=True,
    ),
    _p(
        "location",
        rf"\b{YOUR}\s+(?:nearest|closest|local)\s+(?:train\s+|tube\s+|bus\s+|subway\s+|metro\s+)?(?:station|stop|shop|shops|park|mall|supermarket)\b",
        strong=True,
    ),
    _p(
        "school",
        rf"\b{YOU}\s+(?:walk|get the bus|take the bus|bike|cycle|get driven|go)\s+(?:to|home from|from)\s+school\b|\bhow\s+(?:{DO}\s+)?{YOU}\s+get\s+(?:to|home from)\s+school\b",
        strong=True,
    ),
    _p(
        "school",
        r"\b(?:tu\s+(?:rentres|vas|reviens)\s+comment|comment\s+tu\s+(?:rentres|vas|reviens))\b[^.?!]{0,25}\b(?:ecole|college|lycee|cours|poly)\b",
        strong=True,
    ),
    _p("school", rf"\b{YOUR}\s+class\s+(?:called|name|named)\b"),
    _p(
        "meetup",
        rf"\b(?:can|could|may)\s+i\s+(?:come|pop|swing)\s+(?:and\s+|round\s+(?:and\s+)?|over\s+(?:and\s+)?)?(?:see|visit|meet)\s+{YOU}\b",
        strong=True,
    ),
    _p(
        "meetup",
        r"\b(?:we|u and me|me and u|you and me|me and you)\s+(?:could|can|should|shud|cud|gotta)\s+(?:hang|chill|meet|link|catch up|hang out|kick it)\b",
    ),
    _p(
        "meetup",
        rf"\b(?:grab|get)\s+(?:a\s+|some\s+)?(?:milkshake|coffee|drink|bite|food|pizza|burger|ice ?cream|bubble tea|boba|snack|maccies|mcdonalds|maccas|lunch|dinner)s?\b[^.?!]{{0,30}}\bnear\s+(?:{YOU}|{YOUR})\b",
    ),
    _p("location", r"\bwhere\s+abouts\b", follow_up=True),
    _p(
        "address",
        r"\b(?:what|which|wat|wot)\s+(?:number|no|num|house number|door number)\b(?!\s+(?:is it|r u|are u|do u))",
        needs=STREET_TALK,
    ),
    _p(
        "location",
        rf"\b(?:{YOU}\s+)?(?:must|probably|prob|bet\s+(?:u|you))\s+(?:{LIVE})\s+(?:near|by|close to|next to|on|in|round)\b",
        strong=True,
    ),
    _p(
        "location",
        rf"\b{WHAT}\s+(?:suburb|town|city|estate|neighbou?rhood|village|area|part of town)\s+(?:is|'s)\s+(?:that|it|this)\s+(?:in|near|by|on)\b",
    ),
    _p(
        "location",
        r"\b(?:ur|you'?re|u r|bet\s+ur)\s+(?:on|in|at|near|by)\s+(?:the\s+)?[a-z]+\s+(?:estate|road|street|close|avenue|drive|lane|suburb|area|end)\b",
        strong=True,
    ),
    _p(
        "school",
        rf"\b(?:drives?|takes?|walks?|brings?)\s+{YOU}\s+(?:home\s+)?(?:to|from)\s+school\b|\b(?:{DO}\s+)?{YOU}\s+(?:get|take|catch)\s+the\s+bus\b(?=[^.?!]{{0,40}}\b(?:school|home)\b)|(?<=school)[^.?!]{{0,40}}\b(?:{DO}\s+)?{YOU}\s+(?:get|take|catch)\s+the\s+bus\b",
        strong=True,
    ),
    _p("meetup", rf"\b(?:collect|fetch)\s+{YOU}\b(?!\s+(?:points|coins|cards))", strong=True),
    _p(
        "location",
        r"\bo[uù]\s+(?:habites?|vis|restes|demeures)-tu\b|\b(?:habites?|vis|demeures)-tu\s+(?:loin|pres|proche|a cote|dans|a|en|au|vers)\b",
        strong=True,
    ),
    _p(
        "location",
        r"\btu\s+dois\s+(?:habiter|rester|vivre|demeurer)\s+(?:pres|proche|a cote|pas loin|dans|vers)\b",
        strong=True,
    ),
    _p(
        "location",
        r"\bj'?\s?(?:habite|vis|reste|suis)\s+(?:a|en|au|dans|pres de|vers)\s+[a-z-]+[^.?!]{0,15}\bet\s+toi\b",
        strong=True,
    ),
    _p(
        "location",
        rf"\bi\s+(?:live|stay|am)\s+(?:in|near|by|from)\s+[a-z]+[^.?!]{{0,15}}\b(?:and\s+{YOU}|what about\s+{YOU}|how about\s+{YOU}|wbu|hbu)\b",
        strong=True,
    ),
    _p("location", r"\b(?:dans|de)\s+quel(?:le)?\s+(?:ville|banlieue|quartier|coin|secteur|village)\b"),
    _p(
        "school",
        r"\btu\s+prends\s+quel(?:le)?\s+(?:bus|autobus|ligne|metro|tram)\b|\bquel(?:le)?\s+(?:bus|autobus|ligne)\s+(?:tu\s+prends|prends-tu)\b",
        strong=True,
    ),
    _p(
        "location",
        rf"\b(?:is\s+)?any(?:one|body|1)\s+(?:else\s+)?(?:home|in|there|in the house)\s+with\s+{YOU}\b|\b{YOU}\s+(?:got|have)\s+any(?:one|body)\s+(?:home|with\s+{YOU})\b",
        strong=True,
    ),
    _p(
        "school",
        rf"\b(?:what time|when)\s+(?:does|do|will)\s+(?:school|class|classes|lessons)\s+(?:let out|finish|end|get out|start)\s+(?:for\s+{YOU}|at\s+{YOUR})\b",
        strong=True,
    ),
    _p(
        "school",
        r"\bis\s+it\s+(?:st\.?|saint|the)\s+[a-z']+(?:\s+(?:high|academy|primary|school|college))?\s*\?",
        needs=SCHOOL_TALK,
    ),
    _p(
        "meetup",
        r"\b(?:lets|let's|wanna|we could|we should|shall we|want to|u wanna)\s+(?:grab|get)\s+(?:a\s+|some\s+)?(?:milkshake|coffee|drink|bite|food|pizza|burger|ice ?cream|bubble tea|boba|snack|maccies|mcdonalds|maccas|lunch|dinner|breakfast|shake)s?\b",
    ),
    _p(
        "meetup",
        r"\b(?:te|vous)\s+(?:rejoindre|retrouver|rencontrer|voir)\s+(?:a|au|chez|devant|en vrai|samedi|dimanche|demain|ce soir)\b|\bje\s+peux\s+te\s+(?:rejoindre|retrouver)\b",
        strong=True,
    ),
    _p(
        "meetup",
        r"\b(?:nous|on)\s+(?:pourrions|pourrait|pourra|devrions|pouvons)\s+nous\s+(?:voir|retrouver|rencontrer|rejoindre)\b|\bse\s+(?:rencontrer|retrouver|voir)\s+en\s+(?:personne|vrai)\b|\bon\s+se\s+voit\s+en\s+vrai\b",
        strong=True,
    ),
    _p("meetup", r"\bje\s+t'?\s?attends?\s+devant\s+chez\s+toi\b|\bdevant\s+chez\s+toi\b", strong=True),
    _p(
        "address",
        r"\b(?:file|balance|lache|donne|envoie)[-\s]+(?:moi\s+)?(?:ton|ta)\s+(?:adresse|adr|addresse|code postal|numero de rue)\b(?!\s*(?:mail|e-?mail|courriel|ip))",
        strong=True,
    ),
    _p(
        "address",
        r"\b(?:ton|ta)\s+(?:house|maison)\s+adresse\b|\b(?:ton|ta)\s+(?:adresse|adr)\s+(?:exacte|complete|precise)\b",
        strong=True,
    ),
    _p(
        "location",
        r"\b(?:restes?|habites?|vis)-tu\s+(?:en|a|au|dans|pres|proche|loin)\b(?!\s+(?:souper|diner|manger|coucher|dormir))",
        strong=True,
    ),
    _p(
        "location",
        r"\b(?:active|allume|mets|partage)\s+(?:ta|ton)\s+(?:localisation|location|position|loc|snap\s?map|gps)\b",
        strong=True,
    ),
    _p(
        "school",
        r"\b(?:a\s+)?quelle\s+heure\s+(?:tu\s+)?(?:finis|sors|termines|quittes)\b[^.?!]{0,25}\b(?:ecole|college|lycee|cours|classe|poly|primaire)\b",
        strong=True,
    ),
    _p(
        "school",
        r"\bquel\s+numero\s+d'?\s?(?:autobus|bus)\b|\b(?:autobus|bus)\s+(?:que\s+)?tu\s+prends\b",
        strong=True,
    ),
    _p(
        "school",
        r"\b(?:t'?\s?es|tu\s+es|tu\s+vas)\s+(?:a|à|dans)\s+quel(?:le)?\s+(?:ecole|college|lycee|polyvalente|poly|primaire|etablissement)\b",
        strong=True,
    ),
    _p(
        "school",
        rf"\b(?:tell|give|send|drop|say)\s+(?:me\s+)?{YOUR}\s+(?:school|skool|academy|primary|high school|school name)\b",
        strong=True,
    ),
    _p(
        "school",
        rf"\b{YOUR}\s+(?:school|skool)\s+(?:is|must be|prob|probably|is prob|is probably)\s+(?:the|near|by|on|in|at|next)\b",
    ),
    _p(
        "location",
        rf"\b(?:let\s+{YOU}|{YOU}\s+(?:allowed\s+to|can))\s+(?:walk|go)\s+to\s+the\s+(?:park|shops|beach|library|station)\s+(?:alone|on\s+{YOUR}\s+own|by\s+(?:urself|yourself))",
        strong=True,
    ),
    _p(
        "meetup",
        r"\bmeet\s+(?:up\s+)?for\s+(?:a\s+)?(?:coffee|drink|milkshake|walk|chat|bite|food|pizza|burger|ice ?cream)\b",
    ),
    _p(
        "meetup",
        r"\bcome\s+to\s+the\s+(?:shops|park|mall|library|station|cinema|beach|skatepark|arena|pool|corner|shop|chippy|rec)\b",
    ),
    _p(
        "school",
        r"\b(?:sortez|finissez|terminez|quittez)(?:-vous)?\b[^.?!]{0,25}\b(?:ecole|college|lycee|cours)\b|\ba\s+(?:quelle|kel|kelle)\s+heure\s+(?:sortez|finissez)-vous\b",
        strong=True,
    ),
    _p(
        "school",
        r"\b(?:tu\s+)?(?:finis|sors|termines)\s+(?:a|à)\s+(?:quelle|kel|kelle)\s+heure\b[^.?!]{0,20}\b(?:ecole|college|lycee|cours|poly)\b",
        strong=True,
    ),
    _p("school", r"\bquel\s+numero\b[^.?!]{0,12}\b(?:autobus|bus)\b", strong=True),
    _p("location", r"\b(?:dans|de)\s+(?:quel|kel)\s+(?:kartier|quartie|cartier)\b", strong=True),
)

# Virtual places: a match on a non-strong pattern is dropped when these are around and "irl" is not.
VIRTUAL: Final = re.compile(
    r"\b(?:minecraft|roblox|fortnite|bloxburg|adopt me|animal crossing|wizard101|hogwarts|poudlard|server|serveur"
    r"|realm|spawn|lobby|dungeon|nether|portal|base|coords?|coordinates|coordonnees|in game|in-game|ingame"
    r"|(?:in|on|into|join|play|playing) the game|on the map|the map|island|dodo code|vc|voice chat|discord|ip|world|guild|clan|raid|skin"
    r"|la map|la game|la partie|le jeu|tilted|party code|battle pass|lobby|loot|le lobby|voc|vocal|portail)\b"
)
MAGIC_SCHOOL: Final = re.compile(
    r"\b(?:wizard101|wizard 101|hogwarts|poudlard|magic|spell|spells|fire|ice|storm"
    r"|myth|life|death|balance)\b"
)
# A real place named in the request itself outweighs game talk just before it.
REAL_PLACE: Final = re.compile(
    r"\b(?:mcdo|mcdonalds?|maccies|maccas|parc|park|gare|station|ecole|school|college|centre commercial|mall"
    r"|chez (?:toi|moi|vous|nous)|cinema|cine|bibliotheque|library|mediatheque|cafe|piscine|pool|plage|beach"
    r"|skatepark|shops?|boutique|magasin|depanneur|tim hortons|starbucks|subway|kfc|bus stop|arret)\b"
)
IRL: Final = re.compile(
    r"\b(?:irl|in real life|real life|for real|real address|real one|en vrai|dans la vraie vie)\b"
)

# Talk about requests rather than requests: warnings, quizzes, reports of what someone asked.
ABOUT_REQUESTS: Final = re.compile(
    r"\b(?:never|dont ever|don'?t ever|do not|don'?t|dont)\s+(?:tell|share|give|say|post|answer|reply|send|meet|go|agree"
    r"|put|type|ask)\b(?![^.?!]{0,25}\b(?:ur|your|ya)\s+(?:mum|mom|mam|parents|dad|mother|father|family)\b)"
    r"(?!\s+(?:them|him|her|anyone|any1|nobody|ur \w+|your \w+)\s+(?:but|and|ok|k)\b)"
    r"|\bif\s+(?:someone|somebody|anyone|some1|a stranger|strangers|people|they|a person|anybody)\s+"
    r"(?:asks?|wants?)\b"
    r"|\b(?:someone|somebody|some1|a man|some man|some guy|a guy|a stranger|this guy|this man|he|she|they|people"
    r"|everyone|some(?:one|body) online)\s+(?:keeps?\s+)?(?:asked|asks|asking|wanted to know|wants to know)\b"
    r"|\basked me\b|\bshould (?:u|you) do if\b|\breminder\b|\brappel\b|\bquiz\b"
    r"|\b(?:i'?m|im|i am|ur|you'?re)\s+the\s+(?:stranger|bad guy|creep|predator)\b|\b(?:pretend|role ?play|roleplay)\b"
    r"|\bsi\s+(?:quelqu'?un|qqn|qq1|un inconnu|on)\s+(?:te|vous)\s+(?:demande|veut)\b|\bparles?-en\s+a\b"
    r"|\bbe careful\b|\bcareful (?:sharing|giving|posting|telling|who)\b|\bsharing (?:where|ur|your)\b"
    r"|\bcareful\b[^.?!]{0,20}\b(?:ur|your|address|school)\b|\bdelete (?:it|that|the pic|the photo)\b"
    r"|\bkeep\s+(?:ur|your)\s+(?:address|school|location|postcode|details)\b[^.!?]{0,30}\bto\s+(?:urself|yourself)\b"
    r"|\bne\s+(?:donnez|donne|dis|dites|partagez|partage)\s+jamais\b|\b(?:donnez|donne|dis|dites)\s+jamais\b"
    r"|\bjamais\s+(?:votre|ton|ta)\b|\bfaut\s+jamais\b|\bjamais\s+dire\b|\bdis[- ]lui\s+rien\b|\bne\s+dis\s+(?:jamais|rien)\b|\b(?:il|elle|quelqu'un|qqn)\s+(?:voulait|veut|m'a demande)\b"
    r"|\bsavoir\s+o[uù]\s+j'?\s?habite\b|\bmy (?:mum|mom|dad|parents) (?:says|said)\b|\btell (?:a|an) "
    r"(?:mod|adult|teacher|parent)\b|\bwe (?:dont|don'?t) (?:ask|share)\b|\bnon plus\b"
)

# The request is about someone else ("where does she live", "what school are they going to").
THIRD_PERSON: Final = re.compile(
    r"\b(?:does|did|do|is|are)\s+(?:he|she|they|ur|your)\s*(?:\w+\s+)?(?:live|go|going|work|study)\b"
    r"|\b(?:he|she|they)\s+(?:live|lives|go|goes)\b"
    r"|\b(?:ur|your)\s+(?:brother|sister|bro|sis|mum|mom|dad|cousin|friend|mate|nan|gran)\s+(?:go|goes|live|lives|work|works)\b"
    r"|\b(?:ton|ta|tes)\s+(?:frere|soeur|cousin|cousine|pere|mere|pote|ami|amie|copain|copine|fils|fille)\s+"
    r"(?:va|vont|vit|vivent|habite|habitent|reste|travaille)\b"
    r"|\b(?:il|elle|ils|elles|a|(?<!on )y)\s+(?:va|vont|habite|habitent|vit|reste|demenage|demenagent)\b"
    r"|\bde\s+(?:ton|ta)\s+(?:frere|soeur|cousin|cousine|pote|ami|amie|copain|copine)\b"
)

# Secrecy or a move to private messages: raises severity.
SECRECY: Final = re.compile(
    r"\b(?:don'?t|dont|do not)\s+tell\s+(?:ur|your|ya|anyone|any1|nobody)\b|\bkeep\s+(?:it|this)\s+(?:a\s+)?"
    r"secret\b|\bbetween\s+(?:us|u and me|you and me)\b|\bour (?:little )?secret\b|\bdelete\s+(?:this|the|our)\s+"
    r"(?:chat|messages?|convo)\b|\b(?:dm|pm|inbox|message|msg|snap|text|whatsapp)\s+me\b|\badd me on\b"
    r"|\bno\s?one\s+(?:has|needs)\s+to\s+know\b|\bprivately\b|\ben\s+(?:prive|pv|mp)\b|\bgarde\s+(?:le|ca)\s+(?:secret|pour toi)\b"
    r"|\bdis\s+rien\s+a\s+(?:tes|ta|ton)\b|\bviens en (?:pv|mp|prive)\b"
)


SECOND_PERSON: Final = re.compile(rf"\b(?:{YOU}|{YOUR}|tu|t'|ton|ta|tes|toi|te)(?:\b|(?<=')|$)")
# "same, or where u live" continues the warning just before it rather than asking.
CONTINUATION: Final = re.compile(r"^(?:same|or|and|also|yeah|yea|ya|yes|exactly|ou|et|pareil|oui)\b")
# "do u go to greenfield too?" is a school question when greenfield was just named as a school.
GO_TO_NAMED: Final = re.compile(rf"\b(?:{DO}\s+)?{YOU}\s+go\s+to\s+([a-z][a-z'-]{{2,30}})\b")
SCHOOL_NOUN: Final = (
    r"(?:academy|school|high|primary|college|secondary|elementary|middle|ecole|lycee|college)"
)


def named_school(text: str, context: str) -> str | None:
    """The school name asked about in "do u go to X", if X was named as a school just before."""
    match = GO_TO_NAMED.search(text)
    if match is None:
        return None
    name = match.group(1)
    if re.search(rf"\b{re.escape(name)}\s+{SCHOOL_NOUN}\b|\b{SCHOOL_NOUN}\s+{re.escape(name)}\b", context):
        return match.group(0)
    if (
        name not in _NOT_SCHOOLS
        and text[match.end() :].lstrip().startswith(("?", "too", "as well"))
        and SCHOOL_TALK.search(context)
    ):
        return match.group(0)  # "u go to kingsmead?" right after talk of school
    return None


_NOT_SCHOOLS: Final = frozenset(
    [
        "the",
        "a",
        "my",
        "ur",
        "your",
        "church",
        "gym",
        "bed",
        "sleep",
        "work",
        "town",
        "school",
        "uni",
        "college",
        "the",
        "park",
        "shops",
        "mass",
        "bingo",
        "war",
        "hell",
        "football",
        "practice",
        "training",
        "club",
        "dance",
        "swimming",
    ]
)


@dataclass(frozen=True, slots=True)
class Request:
    category: str
    strong: bool
    follow_up: bool
    said: str


# The patterns worth running on a text: those whose literal words occur in it (see prefilter.py).
_PREFILTER: Final = Prefilter([pattern.regex for pattern in PATTERNS])

# "ur house number in bloxburg": a qualifier right after the match puts it in a game.
IN_GAME: Final = re.compile(
    r"[^.?!]{0,20}\b(?:(?:in|on|at)\s+(?:the\s+)?(?:game(?!\s+(?:shop|store|cafe|centre|center|stop))|bloxburg|adopt me|roblox|minecraft|fortnite|animal crossing"
    r"|server|realm|map|sims|island|world|brookhaven|gta|heli|helicopter|hub|tilted|lobby|spawn|base|vc|party|squad)|(?:a|au)\s+(?:ta|ma|la|ton|mon)\s+(?:base|spawn|ile|lobby)|(?:sur|dans)\s+(?:la\s+|le\s+|ton\s+|mon\s+|l')?"
    r"(?:map|jeu|game|serveur|minecraft|fortnite|roblox|animal crossing|ile|partie))\b"
)


def find(text: Normalised, *, context: str = "", previous: str = "") -> list[Request]:
    """Every request shape found in ``text`` (both its plain and leetspeak-decoded forms).

    ``context`` is the recent room text (normalised), for the virtual-place veto and for school
    names; ``previous`` is the message just before (by anyone), for continued warnings.
    """
    if not (maybe(text.plain) or (text.leet is not text.plain and maybe(text.leet))):
        return []
    plain = focus(text.plain)
    leet = plain if text.leet is text.plain or text.leet == text.plain else focus(text.leet)
    if ABOUT_REQUESTS.search(plain) or THIRD_PERSON.search(plain):
        return []
    if previous and CONTINUATION.search(plain) and ABOUT_REQUESTS.search(previous):
        return []
    found: list[Request] = []
    school = named_school(plain, context)
    if school is not None:
        found.append(Request("school", False, False, school))
    forms = (plain,) if leet is plain else (plain, leet)
    candidates = _PREFILTER.candidates(plain)
    if leet is not plain:
        candidates |= _PREFILTER.candidates(leet)
    for index, pattern in enumerate(PATTERNS):
        if index not in candidates:
            continue  # none of the words this pattern needs is in the message
        for form in forms:
            match = pattern.regex.search(form)
            if match is None:
                continue
            if IN_GAME.search(form, match.start(), match.end() + 40) and not IRL.search(form):
                break
            if pattern.needs is not None and not (
                pattern.needs.search(context) or pattern.needs.search(form)
            ):
                break
            if pattern.category == "school" and not pattern.strong:
                if MAGIC_SCHOOL.search(form) or MAGIC_SCHOOL.search(previous):
                    break
            elif not pattern.strong:
                if IRL.search(form):
                    pass
                elif VIRTUAL.search(form) or (
                    pattern.contextual and VIRTUAL.search(previous) and not REAL_PLACE.search(form)
                ):
                    break
            found.append(Request(pattern.category, pattern.strong, pattern.follow_up, match.group(0)[:60]))
            break
    return found
