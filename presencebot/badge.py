"""The badge: the one thing that makes the bot overt, rendered for what each protocol can show.

The wording comes from the catalogue (agency, what the bot does, how to get help); the images
come from ``presencebot.logos``. Adapters pick the rendition their protocol supports: coloured IRC
text, an image link, an embed with the PNG attached, or plain text as the last resort.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from presencebot import catalogue

PNG_SIZES = (512, 128, 96)

# mIRC colour codes: \x02 bold, \x03FG,BG colour, \x0f reset. 00 white, 02 navy blue.
_IRC_BOLD, _IRC_COLOUR, _IRC_RESET = "\x02", "\x03", "\x0f"
_IRC_WHITE, _IRC_BLUE = "00", "02"
# ANSI: white on blue, blue on white.
_ANSI_RESET = "\x1b[0m"
_ANSI_ON_BLUE = "\x1b[1;97;44m"
_ANSI_ON_WHITE = "\x1b[1;34;107m"


@dataclass(frozen=True, slots=True)
class Badge:
    """The badge wording for one room (agency and language resolved)."""

    language: str
    title: str
    who: str
    what: str
    help: str
    info_url: str

    @classmethod
    def build(cls, *, agency: str, info_url: str, language: str) -> Badge:
        def t(key: str) -> str:
            return catalogue.text(language, key, agency=agency, info_url=info_url)

        return cls(
            language=language,
            title=t("badge.title"),
            who=t("badge.who"),
            what=t("badge.what"),
            help=t("badge.help"),
            info_url=info_url,
        )

    @property
    def lines(self) -> tuple[str, str, str]:
        """Three plain-text lines: who is here, what it does, how to get help."""
        return (f"[{self.title}] {self.who}", self.what, self.help)

    def plain(self) -> str:
        return "\n".join(self.lines)

    def irc_lines(self) -> tuple[str, str, str]:
        """The coloured IRC rendition: a blue-and-white chequered band around the title."""
        band = "".join(
            f"{_IRC_COLOUR}{_IRC_WHITE},{_IRC_BLUE} "
            if i % 2 == 0
            else f"{_IRC_COLOUR}{_IRC_BLUE},{_IRC_WHITE} "
            for i in range(4)
        )
        title = f"{_IRC_BOLD}{_IRC_COLOUR}{_IRC_WHITE},{_IRC_BLUE} {self.title} {_IRC_BOLD}"
        head = f"{band}{title}{band}{_IRC_RESET} {self.who}"
        return (head, self.what, self.help)

    def ansi(self) -> str:
        """The terminal rendition, in ANSI colour."""
        band = "".join(_ANSI_ON_BLUE + " " if i % 2 == 0 else _ANSI_ON_WHITE + " " for i in range(4))
        head = f"{band}{_ANSI_ON_BLUE} {self.title} {band}{_ANSI_RESET} {self.who}"
        return "\n".join((head, self.what, self.help))


@cache
def asset_bytes(name: str) -> bytes:
    """A file from ``presencebot.logos`` (``badge.svg``, ``badge-96.png``, ...)."""
    return resources.files("presencebot.logos").joinpath(name).read_bytes()


def png(size: int) -> bytes:
    if size not in PNG_SIZES:
        raise ValueError(f"no badge PNG at {size} px; sizes: {PNG_SIZES}")
    return asset_bytes(f"badge-{size}.png")


def svg() -> bytes:
    return asset_bytes("badge.svg")
