"""Every sentence the bot says to people, in English and French.

One catalogue keeps the wording consistent across protocols and lets a Canadian room run in
French by setting ``language = "fr"``. Keys are checked by the test-suite: both languages must
have the same keys with the same ``{placeholders}``.
"""

from __future__ import annotations

from typing import Final

EMERGENCY: Final = {"uk": "999", "us": "911", "ca": "911", "au": "000"}

CATALOGUE: Final[dict[str, dict[str, str]]] = {
    "en": {
        "badge.title": "POLICE PRESENCE",
        "badge.who": "{agency} is present in this room, openly, as a police bot.",
        "badge.what": (
            "It watches for anyone asking a child where they live, their school or to meet up, "
            "and alerts police officers. Ordinary chat is not stored."
        ),
        "badge.help": (
            "Type !police to learn more, !help for safety contacts, or send me a private "
            "message starting with !report. More: {info_url}"
        ),
        "police.reply": (
            "I am a police presence bot run openly by {agency}. I look for people asking "
            "children where they live, their school or to meet up, and I alert officers, who may "
            "speak here through me. I do not store ordinary chat. To report something privately, "
            "send me a private message starting with !report. More: {info_url}"
        ),
        "help.intro": (
            "If someone makes you feel unsafe or asks where you live, tell an adult you trust. "
            "You can also contact:"
        ),
        "help.emergency": "In an emergency call {emergency}.",
        "report.thanks": (
            "Thank you, your report was passed to police officers (reference {alert_id}). "
            "If you are in danger right now, call {emergency}."
        ),
        "report.usage": "To report something, send me a private message: !report what happened",
        "leave.goodbye": (
            "Leaving at the request of a channel operator. {agency} will not come back unless "
            "invited again. More: {info_url}"
        ),
        "leave.not_operator": "Only an operator of this room can ask me to leave (!police leave).",
        "invite.declined": (
            "{agency}'s police presence bot only joins a room at the invitation of the people who "
            "run it. More: {info_url}"
        ),
        "report.private_only": (
            "Please do not report in the room: send me a private message starting with !report."
        ),
        "report.delayed": (
            "Thank you. Your report (reference {alert_id}) could not be passed on straight away; "
            "it will be as soon as possible. If you are in danger right now, call {emergency}."
        ),
        "category.address": "home address",
        "category.location": "where they live",
        "category.school": "school",
        "category.meetup": "meeting up",
        "category.report": "private report",
    },
    "fr": {
        "badge.title": "PRÉSENCE POLICIÈRE",
        "badge.who": "{agency} est présent dans ce salon, à visage découvert, sous forme de robot.",
        "badge.what": (
            "Il repère les personnes qui demandent à un enfant où il habite, son école ou un "
            "rendez-vous, et alerte des policiers. Les conversations ordinaires ne sont pas "
            "conservées."
        ),
        "badge.help": (
            "Tapez !police pour en savoir plus, !help pour des contacts d'aide, ou envoyez-moi "
            "un message privé commençant par !report. Plus : {info_url}"
        ),
        "police.reply": (
            "Je suis un robot de présence policière, utilisé ouvertement par {agency}. Je repère "
            "les personnes qui demandent à des enfants où ils habitent, leur école ou un "
            "rendez-vous, et j'alerte des policiers, qui peuvent parler ici par mon intermédiaire. "
            "Je ne conserve pas les conversations ordinaires. Pour signaler quelque chose en "
            "privé, envoyez-moi un message privé commençant par !report. Plus : {info_url}"
        ),
        "help.intro": (
            "Si quelqu'un te met mal à l'aise ou te demande où tu habites, parles-en à un adulte "
            "de confiance. Tu peux aussi contacter :"
        ),
        "help.emergency": "En cas d'urgence, appelle le {emergency}.",
        "report.thanks": (
            "Merci, ton signalement a été transmis à des policiers (référence {alert_id}). "
            "Si tu es en danger maintenant, appelle le {emergency}."
        ),
        "report.usage": (
            "Pour signaler quelque chose, envoie-moi un message privé : !report ce qui s'est passé"
        ),
        "leave.goodbye": (
            "Je pars à la demande d'un opérateur du salon. {agency} ne reviendra que sur "
            "invitation. En savoir plus : {info_url}"
        ),
        "leave.not_operator": "Seul un opérateur de ce salon peut me demander de partir (!police leave).",
        "invite.declined": (
            "Le robot de présence policière de {agency} ne rejoint un salon qu'à l'invitation de "
            "ceux qui le gèrent. En savoir plus : {info_url}"
        ),
        "report.private_only": (
            "Merci de ne pas signaler dans le salon : envoie-moi un message privé commençant par !report."
        ),
        "report.delayed": (
            "Merci. Ton signalement (référence {alert_id}) n'a pas pu être transmis tout de suite ; "
            "il le sera dès que possible. Si tu es en danger maintenant, appelle le {emergency}."
        ),
        "category.address": "adresse du domicile",
        "category.location": "lieu d'habitation",
        "category.school": "école",
        "category.meetup": "rendez-vous",
        "category.report": "signalement privé",
    },
}

LANGUAGES: Final = tuple(CATALOGUE)


def text(language: str, key: str, **values: object) -> str:
    """The sentence ``key`` in ``language`` (English if the language is unknown), filled in."""
    table = CATALOGUE.get(language, CATALOGUE["en"])
    return table[key].format(**values)
