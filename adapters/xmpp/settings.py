"""``[networks.settings]`` for an XMPP account, validated before the bot connects.

Safe defaults: TLS (STARTTLS) with certificate verification, never an unencrypted password
unless ``tls = "optional"`` says so. The password is ``SecretStr``: set it through
``PRESENCEBOT_NETWORKS__<NAME>__SETTINGS__PASSWORD``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

_BARE_JID = r"^[^@/\s]+@[^@/\s]+$"


class XmppSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    jid: str = Field(pattern=_BARE_JID, description="The bot's account, e.g. presencebot@example.org.")
    password: SecretStr | None = Field(
        default=None,
        description="Set it through PRESENCEBOT_NETWORKS__<NAME>__SETTINGS__PASSWORD, never in the file.",
    )
    resource: str = Field(default="presencebot", min_length=1, max_length=64)
    host: str | None = Field(default=None, description="Connect here instead of the JID's domain (DNS SRV).")
    port: int | None = Field(default=None, ge=1, le=65535, description="Default: 5222 (5223 for direct TLS).")
    tls: Literal["required", "optional", "direct"] = Field(
        default="required",
        description="required: STARTTLS or no login; optional: STARTTLS if offered, else plaintext "
        "(local servers only); direct: TLS from the first byte (XEP-0368).",
    )
    tls_verify: bool = Field(default=True, description="Verify the server certificate and host name.")
    ca_file: Path | None = Field(default=None, description="PEM CA bundle; default: the system's.")

    nick: str = Field(default="PolicePresence", min_length=1, max_length=64, description="Room nickname.")
    room_passwords: dict[str, SecretStr] = Field(
        default_factory=dict, description="Room JID -> password, for password-protected rooms."
    )
    badge_image_url: str | None = Field(
        default=None,
        pattern=r"^https://\S+$",
        description="Where the badge PNG is served: sent with the badge as an XEP-0066 link.",
    )
    publish_avatar: bool = Field(default=True, description="Publish the badge as the account's avatar.")

    connect_timeout: float = Field(default=30.0, gt=0, le=600)
    join_timeout: float = Field(default=30.0, gt=0, le=600)
    self_ping_interval: float = Field(
        default=300.0, gt=0, le=86_400, description="XEP-0410: check every room is still joined."
    )
    self_ping_timeout: float = Field(default=30.0, gt=0, le=600)
    reconnect_base_seconds: float = Field(default=2.0, gt=0, le=600)
    reconnect_cap_seconds: float = Field(default=300.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _consistent(self) -> XmppSettings:
        if self.reconnect_cap_seconds < self.reconnect_base_seconds:
            raise ValueError("reconnect_cap_seconds must be at least reconnect_base_seconds")
        return self

    @property
    def domain(self) -> str:
        return self.jid.split("@", 1)[1]
