"""Request shapes per category, their evasions, and the other senses that must not match."""

from __future__ import annotations

import pytest

from presencebot.rules import requests
from presencebot.text import normalise


def categories(text: str, context: str = "") -> set[str]:
    return {r.category for r in requests.find(normalise(text), context=context) if not r.follow_up}


@pytest.mark.parametrize(
    ("text", "category"),
    [
        # address
        ("whats ur home address", "address"),
        ("send me your postcode and ill post it", "address"),
        ("wots ur addy", "address"),
        ("gimme ur adress", "address"),
        ("what's your house number", "address"),
        ("which street do you live on", "address"),
        ("need the door number too", "address"),
        ("c'est quoi ton adresse", "address"),
        ("donne moi ton code postal", "address"),
        ("quelle rue ?", "address"),
        # location
        ("where do you live", "location"),
        ("wer u liv", "location"),
        ("whereabouts r u", "location"),
        ("what area are you in", "location"),
        ("which part of town do you live in", "location"),
        ("r u near glasgow?", "location"),
        ("send me ur location", "location"),
        ("turn on ur snap map", "location"),
        ("wya", "location"),
        ("t'habites où ?", "location"),
        ("tu vis dans quelle ville", "location"),
        ("envoie moi ta position", "location"),
        # school
        ("what school do u go to", "school"),
        ("what skool u go to", "school"),
        ("what ends u from", "location"),
        ("wats ur addie", "address"),
        ("which secondary are you at", "school"),
        ("whos ur form tutor", "school"),
        ("what time do u finish school", "school"),
        ("which bus do u take home from school", "school"),
        ("t'es dans quel lycée", "school"),
        ("tu sors à quelle heure du collège", "school"),
        # meetup
        ("wanna meet up after school", "meetup"),
        ("come over to mine later", "meetup"),
        ("i can pick you up", "meetup"),
        ("we should hang out irl", "meetup"),
        ("on se voit demain au parc ?", "meetup"),
        ("je peux passer te chercher", "meetup"),
        # forms found missing by the independent corpora
        ("what number is your house?", "address"),
        ("quel code postal ?", "address"),
        ("want me to come get you after practice?", "meetup"),
        ("wanna grab a milkshake together?", "meetup"),
        ("u should come hang at the beach sat", "meetup"),
        ("i can drive u", "meetup"),
        ("je peux venir chez toi mercredi ?", "meetup"),
        ("on pourrait se voir ce weekend", "meetup"),
        ("envoie-moi ta localisation", "location"),
        ("ta maison elle est où ?", "location"),
        ("t'es vers lyon ?", "location"),
        ("bet ur near the beach", "location"),
        ("c'est qui ta prof principale ?", "school"),
        ("c'est quoi le nom de ton prof ?", "school"),
        ("whats ur school", "school"),
        ("is ur school the one by the station?", "school"),
        ("u walk home alone after school?", "school"),
        ("tu prends quel autobus pour rentrer ?", "school"),
        ("r u home alone rn?", "location"),
        ("are ur parents home or is it just u", "location"),
        ("t'es-tu tout seul chez vous ?", "location"),
        ("whats ur nearest train station", "location"),
        ("where abouts in glasgow", "location"),
        ("do u walk to school or get the bus", "school"),
        ("tu rentres comment de l'école ?", "school"),
        ("whos ur normal teacher?", "school"),
        ("can i come see u this weekend?", "meetup"),
        ("we could hang if u want", "meetup"),
        ("ça te dit qu'on se voie samedi ?", "meetup"),
        ("où habites-tu ?", "location"),
        ("habites-tu loin de paris ?", "location"),
        ("moi j'habite à melun, et toi ?", "location"),
        ("i live in leeds, wbu", "location"),
        ("tu dois habiter près d'un parc alors, lequel ?", "location"),
        ("veux-tu que je vienne te chercher ?", "meetup"),
        ("pourrait-on se voir samedi ?", "meetup"),
        ("tu veux venir chez moi ?", "meetup"),
        ("tu prends quel bus ?", "school"),
        ("t'es dans la classe de quel prof ?", "school"),
        ("would you like me to collect you after school?", "meetup"),
        ("so ur home alone right now?", "location"),
        ("whos ur art teacher?", "school"),
        ("which class are you in this year", "school"),
        # a game shop is a real shop; "on y va" is the speaker and the target going together
        ("lets meet at the game shop on saturday and trade", "meetup"),
        ("je passe te chercher si tu veux, on y va ensemble", "meetup"),
        ("tell me ur school", "school"),
        ("on s'voit au parc ?", "meetup"),
        ("dans quel kartier tu restes", "location"),
        ("tes tout seul a la maison ?", "location"),
    ],
)
def test_requests(text: str, category: str) -> None:
    assert category in categories(text), text


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("whats ur p o s t c o d e", "address"),
        ("whats ur a.d.d.r.e.s.s", "address"),
        ("whats ur add\u200bress", "address"),
        ("whats ur аddrеss", "address"),  # Cyrillic а, е
        ("whats ur ａｄｄｒｅｓｓ", "address"),
        ("wh3r3 d0 u l1v3", "location"),
        ("𝐰𝐡𝐞𝐫𝐞 do u live", "location"),
        ("w h e r e  d o  u  l i v e", "location"),
        ("ᴡʜᴀᴛ ꜱᴄʜᴏᴏʟ do u go to", "school"),
        ("wh1ch sk00l r u at", "school"),
        ("we should m33t 1rl", "meetup"),
        ("🏠 addy?", "address"),
        ("📍 pls", "location"),
        ("t'h4b1t3s où", "location"),
        ("whаt сchооl do u go to", "school"),  # Cyrillic а, с, о spelling "cchool"
    ],
)
def test_evasions(text: str, category: str) -> None:
    assert category in categories(text), text


@pytest.mark.parametrize(
    "text",
    [
        "whats the ip address",
        "whats ur email address",
        "check the server address",
        "we need to address the lag",
        "send ur wallet address",
        "whats the MAC address",
        "what part of the speech are u on",
        "ton adresse mail stp",
        "c quoi l'adresse ip du serveur",
        "tu restes ou tu pars ?",
        "what country are you from",
        "what timezone r u in",
        "which state r u in",
        "tu viens de quel pays",
        "never tell anyone your address",
        "if someone asks what school you go to tell a mod",
        "some guy asked me where i live",
        "my mum says never say what school u go to",
        "where does she live",
        "what school are they going to",
        "which school subject do u like",
        "meet me in vc",
        "send the zip file",
        "t'es sur quel fuseau horaire ?",
        "whats ur school like",
        "i can drive u crazy",
        "tu restes-tu à souper ?",
        "t'es quelle classe ? mage ou guerrier ?",
        "faut jamais dire ton école ni où tu restes",
        "please never meet up with anyone you only know online",
        "keep your address and school to yourself",
        "il y va tous les jours, il habite à côté",
        "elle va à quelle école ?",
        "meet me at the base in the game",
    ],
)
def test_not_requests(text: str) -> None:
    assert categories(text) == set(), text


@pytest.mark.parametrize(
    ("text", "context"),
    [
        ("meet me at spawn", ""),
        ("whats the house number", "i built a mansion in bloxburg"),
        ("come over to my island", ""),
        ("where r u on the map", ""),
        ("t'es où sur la map", ""),
        ("whats ur coords", ""),
    ],
)
def test_virtual_places_are_not_whereabouts(text: str, context: str) -> None:
    found = requests.find(
        normalise(text), context=normalise(context).plain, previous=normalise(context).plain
    )
    assert {r.category for r in found if not r.follow_up} == set(), text


def test_irl_and_inherently_real_requests_survive_game_context() -> None:
    game = normalise("my minecraft base is huge").plain
    assert "location" in categories("what town do u live in irl", game)
    assert "address" in categories("whats ur postcode", game)


def test_secrecy_is_recognised() -> None:
    assert requests.SECRECY.search(normalise("dont tell ur mum ok").plain)
    assert requests.SECRECY.search(normalise("dm me ur address").plain)
    assert not requests.SECRECY.search(
        normalise("never tell anyone your address").plain.replace("never", "x")
    )


def test_long_messages_are_read_around_their_cues() -> None:
    filler = "lol that match was mad and the ref was blind " * 40
    text = normalise(filler + "anyway whats ur postcode mate " + filler)
    assert len(text.plain) > requests.FOCUS_CHARS
    assert len(requests.focus(text.plain)) <= requests.FOCUS_CHARS
    assert "address" in {r.category for r in requests.find(text)}
    flood = normalise("where do u live " * 4000)
    assert len(requests.focus(flood.plain)) <= requests.FOCUS_CHARS
