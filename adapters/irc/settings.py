"""``[networks.settings]`` for an IRC network, validated before the bot connects.

Defaults are the safe ones: TLS with certificate verification, a polite outgoing rate, and no
silent fallback to plaintext. Secrets (server password, SASL and NickServ passwords) are
``SecretStr`` and best set through ``PRESENCEBOT_NETWORKS__<NAME>__SETTINGS__...`` variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

# RFC 2812 nick characters; the first may not be a digit or '-'.
_NICK = r"^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]{0,31}$"


class IrcSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, description="Server host name or address.")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Default: 6697 with TLS, 6667 without."
    )
    tls: bool = Field(default=True, description="Plaintext only when this is explicitly false.")
    tls_verify: bool = Field(default=True, description="Verify the server certificate and host name.")
    ca_file: Path | None = Field(default=None, description="PEM CA bundle; default: the system's.")
    client_cert: Path | None = Field(
        default=None, description="PEM client certificate (for SASL EXTERNAL / CertFP)."
    )
    client_key: Path | None = Field(default=None, description="PEM key, if not inside client_cert.")
    server_password: SecretStr | None = Field(default=None, description="Sent as PASS.")

    nick: str = Field(default="PolicePresence", pattern=_NICK)
    alt_nicks: list[str] = Field(default_factory=list, description="Tried in order when nick is taken.")
    username: str = Field(default="presence", pattern=r"^[A-Za-z0-9_.-]{1,10}$")
    realname: str | None = Field(
        default=None, max_length=200, description="Default: names the agency and the info URL."
    )

    sasl: Literal["none", "plain", "external"] = "none"
    sasl_username: str | None = Field(default=None, description="Account name; default: nick.")
    sasl_password: SecretStr | None = None
    nickserv_password: SecretStr | None = Field(
        default=None,
        description="IDENTIFY to NickServ after connecting when SASL is off or not offered "
        "(default: sasl_password).",
    )
    bot_mode: str = Field(
        default="auto",
        pattern=r"^(auto|off|[A-Za-z])$",
        description="User mode marking the bot: auto = the server's BOT= mode, else B; off = none.",
    )

    connect_timeout: float = Field(default=30.0, gt=0, le=600, description="TCP+TLS+registration.")
    ping_interval: float = Field(default=60.0, gt=0, le=3600, description="PING after this much silence.")
    ping_timeout: float = Field(
        default=120.0, gt=0, le=3600, description="Silence after which the connection is dead."
    )
    reconnect_base_seconds: float = Field(default=2.0, gt=0, le=600)
    reconnect_cap_seconds: float = Field(default=300.0, gt=0, le=3600)

    flood_burst: int = Field(default=5, ge=1, le=100, description="Lines that may go out at once.")
    flood_rate: float = Field(default=1.0, gt=0, le=100, description="Lines per second after the burst.")
    max_queue: int = Field(default=500, ge=1, le=100_000, description="Lines queued per target.")
    max_queue_seconds: float = Field(
        default=300.0, gt=0, le=86_400, description="A line not sent within this is reported."
    )
    priority_targets: list[str] = Field(
        default_factory=list, description="Officer channels/nicks: their lines jump the queue."
    )
    announce_timeout: float = Field(default=60.0, gt=0, le=600, description="Time to post the badge.")
    room_keys: dict[str, SecretStr] = Field(
        default_factory=dict, description="Channel -> key (+k), e.g. for a private officers' channel."
    )

    @model_validator(mode="after")
    def _consistent(self) -> IrcSettings:
        if self.sasl == "plain" and self.sasl_password is None:
            raise ValueError("sasl = 'plain' needs sasl_password (set it through the environment)")
        if self.sasl == "external" and self.client_cert is None:
            raise ValueError("sasl = 'external' needs client_cert")
        if self.reconnect_cap_seconds < self.reconnect_base_seconds:
            raise ValueError("reconnect_cap_seconds must be at least reconnect_base_seconds")
        if self.ping_timeout < self.ping_interval:
            raise ValueError("ping_timeout must be at least ping_interval")
        return self

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (6697 if self.tls else 6667)

    @property
    def account(self) -> str:
        return self.sasl_username or self.nick

    @property
    def identify_password(self) -> SecretStr | None:
        return self.nickserv_password or self.sasl_password
