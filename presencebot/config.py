"""Configuration: one TOML file, validated by pydantic, with environment overrides for secrets.

Every problem in a file is reported at once, each with its line and key path, because an operator
fixing a config one error per run soon stops trusting the tool. Secrets are ``SecretStr`` and are
never echoed, not even in error messages.

Environment overrides: ``PRESENCEBOT_`` followed by the key path joined with ``__``. Entries of
``networks`` are addressed by their ``name``: ``PRESENCEBOT_NETWORKS__LIBERA__SETTINGS__PASSWORD``
sets ``password`` in the settings of the network named ``libera``; ``PRESENCEBOT_STORE__PATH`` sets
the store path.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from presencebot.errors import ConfigError
from presencebot.roster import RosterConfig
from presencebot.tomlpos import key_lines, locate

ENV_PREFIX = "PRESENCEBOT_"
# Substrings of a key name that mark its value secret; "pass" also covers passwd, nickserv_pass.
_SENSITIVE = ("pass", "token", "secret", "key", "credential", "auth", "cookie")

Language = Literal["en", "fr"]
Region = Literal["uk", "us", "ca", "au"]


class Audience(StrEnum):
    GENERAL = "general"
    """Nobody is presumed a minor; rules rely on what people say about themselves."""
    MINORS = "minors"
    """The room operator declared a children's room: everyone is presumed a minor unless they
    state an adult age."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HelpResource(_Model):
    """A public safety resource quoted by ``!help``."""

    name: str
    names: dict[Language, str] = Field(default_factory=dict, description="Translated names")
    phone: str | None = None
    url: str | None = None
    note: str | None = Field(default=None, description="e.g. 'text 686868', in the room language")

    def display_name(self, language: str) -> str:
        for lang, name in self.names.items():
            if lang == language:
                return name
        return self.name


def _default_help() -> dict[Region, list[HelpResource]]:
    return {
        "uk": [
            HelpResource(name="Childline", phone="0800 1111", url="https://www.childline.org.uk"),
            HelpResource(name="CEOP (report online abuse)", url="https://www.ceop.police.uk"),
        ],
        "us": [
            HelpResource(
                name="NCMEC CyberTipline", phone="1-800-843-5678", url="https://report.cybertip.org"
            ),
            HelpResource(name="Childhelp hotline", phone="1-800-422-4453"),
        ],
        "ca": [
            HelpResource(
                name="Kids Help Phone",
                names={"fr": "Jeunesse, J'écoute"},
                phone="1-800-668-6868",
                url="https://kidshelpphone.ca",
            ),
            HelpResource(name="Cybertip.ca", url="https://www.cybertip.ca"),
        ],
        "au": [
            HelpResource(name="Kids Helpline", phone="1800 55 1800", url="https://kidshelpline.com.au"),
            HelpResource(name="ACCCE (report online abuse)", url="https://www.accce.gov.au/report"),
        ],
    }


class AgencyConfig(_Model):
    name: str = Field(default="Demo Police Service", min_length=1, max_length=80)
    info_url: str = Field(default="https://example.org/presencebot", pattern=r"^https?://\S+$")
    region: Region = "uk"
    """Which country's safety resources ``!help`` quotes by default."""


class RoomSettings(_Model):
    """Settings a room may override; ``None`` means 'inherit from the network, then the defaults'."""

    audience: Audience | None = None
    language: Language | None = None
    rules: list[str] | None = None
    region: Region | None = None


class RoomDefaults(_Model):
    audience: Audience = Audience.GENERAL
    language: Language = "en"
    rules: list[str] = Field(default_factory=lambda: ["minor_whereabouts"])
    region: Region | None = None


class RoomConfig(RoomSettings):
    id: str = Field(min_length=1, max_length=200)
    rejoin_on_kick: bool = False
    announce_every_minutes: float | None = Field(
        default=None,
        ge=5,
        le=10_080,
        description="Post the badge again every this many minutes while in the room (off by default).",
    )


class InvitePolicy(_Model):
    """Who may bring the bot into a room that is not in the config (consent of the room's owners)."""

    allow: list[str] = Field(
        default_factory=list,
        description="Accounts allowed to invite the bot into rooms not listed in config.",
    )
    masks: list[str] = Field(
        default_factory=list,
        description="Protocol addresses allowed to invite (IRC nick!user@host, with * and ? wildcards).",
    )
    room_operators: bool = Field(
        default=False,
        description="Accept an invite from an operator of the room the bot is invited to.",
    )


class NetworkConfig(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    adapter: str = Field(min_length=1)
    enabled: bool = True
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Adapter-specific; validated by the adapter's own model."
    )
    rooms: list[RoomConfig] = Field(default_factory=list)
    room_defaults: RoomSettings = Field(default_factory=RoomSettings)
    invites: InvitePolicy = Field(default_factory=InvitePolicy)

    @model_validator(mode="after")
    def _unique_rooms(self) -> NetworkConfig:
        seen: set[str] = set()
        for room in self.rooms:
            if room.id in seen:
                raise ValueError(f"room {room.id!r} is listed twice")
            seen.add(room.id)
        return self


class MemoryConfig(_Model):
    """How much ordinary chat the bot keeps per room, in memory only."""

    max_messages: int = Field(default=100, ge=1, le=10_000)
    max_age_seconds: float = Field(default=900.0, gt=0, le=86_400)


class EvidenceConfig(_Model):
    """The bounded context window stored with a flagged message."""

    context_messages: int = Field(default=10, ge=0, le=100)
    context_seconds: float = Field(default=600.0, ge=0, le=86_400)


class RulesConfig(_Model):
    time_budget_ms: float = Field(default=50.0, gt=0, le=60_000)
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict)


class CommandsConfig(_Model):
    cooldown_seconds: float = Field(default=30.0, ge=0, le=3600)
    """``!police`` and ``!help`` are answered at most once per this many seconds per room."""


class StoreConfig(_Model):
    path: Path = Path("presencebot.db")
    """SQLite file; relative paths are relative to the working directory. Unused when ``url`` is set."""
    url: SecretStr | None = None
    """PostgreSQL instead of SQLite: ``postgresql://user@host:5432/dbname`` (the tables go in the
    first schema of the role's ``search_path``; ``?search_path=name`` picks another).
    Set a URL with a password through ``PRESENCEBOT_STORE__URL``, not in the file."""

    @model_validator(mode="after")
    def _postgresql_url(self) -> StoreConfig:
        # Checked on the model, not the field: a field error would quote the URL, password and all.
        url = None if self.url is None else self.url.get_secret_value()
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("store.url must be a postgresql:// URL (or left unset for SQLite)")
        return self


class NotifyConfig(_Model):
    """A notification target: where alerts are delivered (an officer room, a webhook, an email)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    sink: Literal["room", "webhook", "email"] = Field(
        description="room: an officers' room on a configured network; webhook: signed JSON POST; email: SMTP."
    )
    role: Literal["officers", "supervisors"] = Field(
        default="officers",
        description="Without a roster: officers get every alert, supervisors escalations and "
        "delivery failures.",
    )
    settings: dict[str, Any] = Field(default_factory=dict)


class DeliveryConfig(_Model):
    """How the dispatcher retries: at least once, with backoff, then a dead letter."""

    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_base_seconds: float = Field(default=2.0, gt=0, le=3600)
    backoff_cap_seconds: float = Field(default=600.0, gt=0, le=86_400)
    concurrency: int = Field(default=8, ge=1, le=256)
    shutdown_grace_seconds: float = Field(
        default=5.0, ge=0, le=300, description="At a clean stop, keep delivering what is due this long."
    )
    claim_seconds: float = Field(
        default=120.0,
        ge=1,
        le=3600,
        description="A notice being sent is held by its dispatcher this long: keep it above every "
        "sink's timeout. A dispatcher that dies mid-send leaves the notice to others after this.",
    )


class EscalationStep(_Model):
    after_minutes: float = Field(ge=0, le=10_080, description="Minutes after the previous notice.")
    notify: Literal["supervisors", "next_force", "on_duty"] = Field(
        description="supervisors: of the force handling the alert; next_force: hand it to the next "
        "force in the roster; on_duty: remind the force on duty now."
    )


class EscalationConfig(_Model):
    """What happens while nobody acknowledges an alert. No step ever resolves it."""

    steps: list[EscalationStep] = Field(default_factory=list)
    repeat: int = Field(default=0, ge=0, le=20, description="Run the steps again this many times.")


class GroupingConfig(_Model):
    window_minutes: float = Field(
        default=30.0,
        ge=0,
        le=1440,
        description="The same requester, target, room and category within this window update one "
        "alert instead of paging again (0: never group).",
    )


class ConsoleConfig(_Model):
    """The officers' web console (``presencebot console``, or with the bot when enabled)."""

    enabled: bool = Field(default=False, description="Serve the console from the bot process.")
    host: str = Field(default="127.0.0.1", description="Keep it on loopback behind a TLS reverse proxy.")
    port: int = Field(default=8080, ge=1, le=65535)
    secure_cookies: bool = Field(
        default=True, description="Cookies only over HTTPS; false only for a local test over HTTP."
    )
    session_hours: float = Field(default=12.0, gt=0, le=72)
    idle_minutes: float = Field(default=30.0, gt=0, le=720)
    purge_dismissed_after_days: float = Field(
        default=30.0, ge=0, le=3650, description="Dismissed alerts' evidence is purged after this long."
    )


class OpsConfig(_Model):
    """``/metrics`` (Prometheus) and ``/healthz`` served from the bot process (docs: presencebot.health)."""

    enabled: bool = Field(default=False, description="Serve /metrics and /healthz from the bot process.")
    host: str = Field(
        default="127.0.0.1", description="Loopback by default: /healthz names rooms and kick reasons."
    )
    port: int = Field(default=9108, ge=1, le=65535)
    worker_id: str | None = Field(
        default=None,
        description="Carried by every log line and presencebot_worker_info (default: host:pid; "
        "in a fleet, the fleet worker id).",
    )


class FleetConfig(_Model):
    """Fleet mode: several bot processes share the configured networks through leases in
    PostgreSQL; each network entry is one connection unit."""

    enabled: bool = False
    database_url: SecretStr = Field(
        default=SecretStr("postgresql://localhost/presencebot"),
        description="PostgreSQL for the leases (a password goes in PRESENCEBOT_FLEET__DATABASE_URL).",
    )
    lease_ttl_seconds: float = Field(
        default=30.0, ge=1, le=600, description="A dead worker's units move to the others after this."
    )
    worker_id: str | None = Field(default=None, description="Default: host:pid:random, unique per start.")


class SupervisorConfig(_Model):
    """How a crashed adapter is restarted: exponential backoff with full jitter."""

    restart_base_seconds: float = Field(default=1.0, gt=0, le=600)
    restart_cap_seconds: float = Field(default=60.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _cap_above_base(self) -> SupervisorConfig:
        if self.restart_cap_seconds < self.restart_base_seconds:
            raise ValueError("restart_cap_seconds must be at least restart_base_seconds")
        return self


class LoggingConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    """``auto``: readable in a terminal, JSON lines otherwise."""


class Config(_Model):
    agency: AgencyConfig = Field(default_factory=AgencyConfig)
    room_defaults: RoomDefaults = Field(default_factory=RoomDefaults)
    networks: list[NetworkConfig] = Field(
        default_factory=lambda: [
            NetworkConfig(name="local", adapter="terminal", rooms=[RoomConfig(id="#local")])
        ]
    )
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    notify: list[NotifyConfig] = Field(default_factory=list)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    grouping: GroupingConfig = Field(default_factory=GroupingConfig)
    roster: RosterConfig = Field(default_factory=RosterConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    fleet: FleetConfig = Field(default_factory=FleetConfig)
    ops: OpsConfig = Field(default_factory=OpsConfig)
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    help: dict[Region, list[HelpResource]] = Field(default_factory=_default_help)

    @field_validator("networks")
    @classmethod
    def _unique_networks(cls, networks: list[NetworkConfig]) -> list[NetworkConfig]:
        names = [n.name for n in networks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"network names must be unique; repeated: {', '.join(dupes)}")
        return networks

    @model_validator(mode="after")
    def _help_for_every_region(self) -> Config:
        defaults = _default_help()
        merged = {**defaults, **self.help}
        object.__setattr__(self, "help", merged)
        return self

    @field_validator("notify")
    @classmethod
    def _unique_targets(cls, notify: list[NotifyConfig]) -> list[NotifyConfig]:
        names = [n.name for n in notify]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"notification target names must be unique; repeated: {', '.join(dupes)}")
        return notify

    @model_validator(mode="after")
    def _known_targets(self) -> Config:
        known = {n.name for n in self.notify}
        for force in self.roster.forces:
            for name in (*force.sinks, *force.supervisors):
                if name not in known:
                    raise ValueError(
                        f"roster force {force.name!r} names {name!r}, which is not a [[notify]] target"
                    )
        return self

    def network(self, name: str) -> NetworkConfig:
        for network in self.networks:
            if network.name == name:
                return network
        raise KeyError(name)


KeyPath = tuple[str | int, ...]


def apply_env(
    raw: dict[str, Any], environ: Mapping[str, str], *, origins: dict[KeyPath, str] | None = None
) -> dict[str, Any]:
    """Overlay ``PRESENCEBOT_*`` variables onto the parsed TOML (see the module docstring).

    ``origins``, when given, receives the key path each variable set (list entries by index), so
    an invalid value is reported against the variable rather than a line of the file that does not
    hold it.
    """
    for var, value in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX:
            continue
        parts = [p.lower() for p in var[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        if parts[0] not in raw:
            entries = _default_entries(parts[0])
            if entries is not None:
                raw[parts[0]] = entries
        path = _set_path(raw, parts, value, var)
        if origins is not None:
            origins[path] = var
    return raw


def _default_entries(key: str) -> list[Any] | None:
    """The built-in value of a top-level list such as ``networks``, shaped as TOML would give it.

    Without it, ``PRESENCEBOT_NETWORKS__LOCAL__...`` on a file that lists no networks would turn
    ``networks`` into a table instead of reaching the default ``local`` network.
    """
    field = Config.model_fields.get(key)
    if field is None:
        return None
    default = field.get_default(call_default_factory=True)
    if not isinstance(default, list):
        return None
    return [
        item.model_dump(mode="json", exclude_defaults=True) if isinstance(item, BaseModel) else item
        for item in default
    ]


def _set_path(node: dict[str, Any], parts: Sequence[str], value: str, var: str) -> KeyPath:
    """Set ``value`` at ``parts`` below ``node``; returns the key path it was set at."""
    key, rest = parts[0], parts[1:]
    child = node.get(key)
    if isinstance(child, list):
        # Lists of named tables (networks, notify) are addressed by name, one key at a time.
        if not rest:
            raise ConfigError([f"{var}: cannot replace the whole list {key!r} from the environment"])
        name, rest = rest[0], rest[1:]
        for index, item in enumerate(child):
            if isinstance(item, dict) and str(item.get("name", "")).lower() == name:
                if not rest:
                    raise ConfigError(
                        [f"{var}: cannot replace the whole entry {name!r} of {key!r}; set one of its keys"]
                    )
                return (key, index, *_set_path(item, rest, value, var))
        raise ConfigError([f"{var}: no entry named {name!r} in {key!r}"])
    if not rest:
        node[key] = value
        return (key,)
    if child is None:
        child = node[key] = {}
    if not isinstance(child, dict):
        raise ConfigError([f"{var}: {key!r} is not a table, cannot set {'.'.join(rest)!r} in it"])
    return (key, *_set_path(child, rest, value, var))


def _is_sensitive(loc: Sequence[str | int]) -> bool:
    return any(isinstance(p, str) and any(s in p.lower() for s in _SENSITIVE) for p in loc)


def _secrets(value: Any, sensitive: bool) -> Iterator[str]:
    """Every string in ``value`` held under a sensitive key (all of them when ``sensitive``).

    Validators may quote their input in their message (``'abc' is not a bot token``), and a
    model-level error carries the whole table, so hiding ``(got ...)`` alone is not enough. Strings
    shorter than 4 characters are left alone: scrubbing them would garble every message and they
    are not credible secrets.
    """
    if isinstance(value, str):
        if sensitive and len(value) >= 4:
            yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _secrets(item, sensitive or _is_sensitive((str(key),)))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secrets(item, sensitive)


def dotted_path(loc: Sequence[str | int]) -> str:
    """``("networks", 0, "rooms")`` -> ``networks[0].rooms``, the form every problem uses."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _origin(loc: KeyPath, origins: Mapping[KeyPath, str]) -> str | None:
    """The environment variable that set ``loc`` or one of its ancestors, if any."""
    for cut in range(len(loc), 0, -1):
        if loc[:cut] in origins:
            return origins[loc[:cut]]
    return None


def describe_errors(
    error: ValidationError,
    *,
    source: str,
    text: str | None,
    prefix: Sequence[str | int] = (),
    origins: Mapping[KeyPath, str] | None = None,
) -> list[str]:
    """One line per pydantic error: ``file:line: key.path: what is wrong``. Never echoes secrets.

    A value set by an environment variable is reported as ``VARIABLE: key.path: what is wrong``.
    """
    lines = key_lines(text) if text is not None else {}
    problems = []
    for err in error.errors():
        loc = (*prefix, *err["loc"])
        variable = _origin(loc, origins or {})
        line = locate(loc, lines)
        where = variable or (f"{source}:{line}" if line is not None else source)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling; `presencebot config-schema` lists them)"
        elif err["type"] == "missing":
            message = "required setting is missing"
        value = err.get("input")
        if (
            err["type"] not in ("missing", "extra_forbidden")
            and not _is_sensitive(loc)
            and isinstance(value, str | int | float | bool)
            and len(repr(value)) <= 60
        ):
            message += f" (got {value!r})"
        for secret in sorted(set(_secrets(value, _is_sensitive(loc))), key=len, reverse=True):
            message = message.replace(secret, "***")
        problems.append(f"{where}: {dotted_path(loc)}: {message}")
    return problems


def parse(
    text: str | None, *, source: str = "<defaults>", environ: Mapping[str, str] | None = None
) -> Config:
    """Validate a TOML document (``None``: the built-in defaults) into a :class:`Config`."""
    raw: dict[str, Any] = {}
    if text is not None:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None
    origins: dict[KeyPath, str] = {}
    raw = apply_env(raw, os.environ if environ is None else environ, origins=origins)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, source=source, text=text, origins=origins)) from None


def load(path: Path | None, *, environ: Mapping[str, str] | None = None) -> tuple[Config, str | None]:
    """Load ``path`` (or the built-in defaults when ``None``); returns the config and its text."""
    if path is None:
        return parse(None, environ=environ), None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: the config file is not UTF-8 text"]) from None
    return parse(text, source=str(path), environ=environ), text


def schema() -> dict[str, Any]:
    return Config.model_json_schema()
