"""The email sink: one plain-text mail per alert, through an SMTP submission server.

The body is the notice (facts only, never chat messages: mail is archived, forwarded and indexed
far outside the agency's control) and a pointer to where the evidence can be read. The subject is
built from chat-controlled names (room, category), cleaned of CR/LF and every other control
character so that a nick can never add a header or a recipient.

Retries are safe to deduplicate: the ``Message-ID`` is derived from the outbox row id, so the same
notification always produces the same id. When some recipients accept and others are refused with
a temporary error, the sink remembers who already has the mail and a retry goes only to the rest.

TLS is required by default (STARTTLS on 587, or implicit TLS with ``tls = true``), certificates are
verified, and a password is never sent over a plaintext connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Final

import aiosmtplib
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from presencebot.alerts import Alert
from presencebot.errors import ConfigError
from presencebot.notice import clean, clip, headline, notice_text
from presencebot.sinks import Delivery, DeliveryFailed
from presencebot.sinks.webhook import alert_link

__all__ = ["EmailSettings", "EmailSink", "build_message", "message_id", "subject"]

SUBJECT_PREFIX: Final = "[presencebot]"
_SUBJECT_CHARS: Final = 250
_REMEMBERED: Final = 256
"""Deliveries whose partly accepted recipients are remembered (a retry skips them)."""
_ID_TOKEN: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DOMAIN: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*$")
_FALLBACK_DOMAIN: Final = "presencebot.invalid"


def _address(value: str) -> str:
    """The bare address of ``Name <user@host>`` or ``user@host``; ValueError when unusable."""
    if not value.isprintable():
        raise ValueError("an address may not contain control characters")
    _, address = parseaddr(value)
    local, at, domain = address.rpartition("@")
    if not (at and local and domain) or any(c.isspace() for c in address):
        raise ValueError(f"{value!r} is not an email address (user@host)")
    return address


class EmailSettings(BaseModel):
    """``settings`` of a ``[[notify]]`` entry whose sink is ``email``."""

    # Inputs are never quoted in errors: a password could be.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    host: str = Field(min_length=1, pattern=r"^[^\s/]+$", description="SMTP submission server.")
    port: int | None = Field(default=None, ge=1, le=65535, description="Default: 465 with tls, else 587.")
    starttls: bool = Field(default=True, description="Require STARTTLS; plaintext only when false.")
    tls: bool = Field(default=False, description="Implicit TLS from the first byte (port 465).")
    username: str | None = Field(default=None, min_length=1)
    password: SecretStr | None = None
    sender: str = Field(description="From address, e.g. 'presencebot <alerts@police.example>'.")
    recipients: list[str] = Field(min_length=1)
    timeout_seconds: float = Field(default=30.0, gt=0, le=600, description="The whole exchange.")
    ca_file: Path | None = Field(default=None, description="PEM CA bundle; default: the system's.")
    tls_verify: bool = Field(default=True, description="Verify the server certificate and host name.")
    link_base: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="Console URL for the mail's link: '{id}' is replaced by the alert id, else "
        "'/alerts/<id>' is appended.",
    )

    @field_validator("sender")
    @classmethod
    def _valid_sender(cls, sender: str) -> str:
        _address(sender)
        return sender

    @field_validator("recipients")
    @classmethod
    def _valid_recipients(cls, recipients: list[str]) -> list[str]:
        for recipient in recipients:
            _address(recipient)
        return recipients

    @model_validator(mode="after")
    def _consistent(self) -> EmailSettings:
        if self.tls and self.starttls and "starttls" in self.model_fields_set:
            raise ValueError("choose one of tls (implicit TLS) and starttls")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.password is not None and not (self.tls or self.starttls):
            raise ValueError("a password is never sent without TLS: enable starttls or tls")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (465 if self.tls else 587)

    @property
    def envelope_sender(self) -> str:
        return _address(self.sender)

    @property
    def envelope_recipients(self) -> list[str]:
        return [_address(r) for r in self.recipients]


# --- the message -------------------------------------------------------------------------------


def subject(alert: Alert) -> str:
    """``[presencebot] HIGH minor_whereabouts alert <id> in libera/#kids``, on one line."""
    return clip(clean(f"{SUBJECT_PREFIX} {headline(alert)}"), _SUBJECT_CHARS)


def message_id(delivery_id: str, sender: str) -> str:
    """A ``Message-ID`` that is the same for every attempt at one notification.

    Outbox ids are hex; anything else is hashed so that the id stays a valid dot-atom.
    """
    token = (
        delivery_id if _ID_TOKEN.fullmatch(delivery_id) else hashlib.sha256(delivery_id.encode()).hexdigest()
    )
    domain = parseaddr(sender)[1].rpartition("@")[2]
    if not _DOMAIN.fullmatch(domain):
        domain = _FALLBACK_DOMAIN
    return f"<{token}.presencebot@{domain}>"


def _body(alert: Alert, link_base: str | None) -> str:
    lines = [
        notice_text(alert),
        "",
        f"Details and evidence: presencebot alerts show {clean(alert.id)}",
    ]
    link = alert_link(link_base, clean(alert.id))
    if link is not None:
        lines.append(f"Console: {link}")
    lines += ["", "This mail holds no chat messages; the evidence stays in the presencebot store."]
    return "\n".join(lines) + "\n"


def build_message(
    delivery: Delivery, settings: EmailSettings, *, now: datetime | None = None
) -> EmailMessage:
    """The mail for ``delivery`` (the email policy also refuses CR/LF in any header value)."""
    alert = delivery.alert
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message["Subject"] = subject(alert)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id(delivery.id, settings.sender)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the bot
    message["X-Presencebot-Alert"] = clip(clean(alert.id), 64)
    message.set_content(_body(alert, settings.link_base))
    return message


# --- SMTP --------------------------------------------------------------------------------------


def _tls_context(settings: EmailSettings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"email ca_file {settings.ca_file}: {exc}"]) from exc
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _reply(code: int, message: str) -> str:
    return f"SMTP {code} {clip(clean(message), 200)}"


def _refused(refusals: Iterable[tuple[str, int, str]]) -> DeliveryFailed:
    """Some recipients refused: retry while any refusal is temporary, else give up on them."""
    items = list(refusals)
    said = "; ".join(f"{rcpt}: {_reply(code, text)}" for rcpt, code, text in items)
    permanent = all(code >= 500 for _, code, _ in items)
    return DeliveryFailed(f"recipients refused: {said}", permanent=permanent)


def _failure(exc: aiosmtplib.SMTPException) -> DeliveryFailed:
    """An aiosmtplib error as the dispatcher needs it: 5xx permanent, 4xx and network retryable."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return _refused((r.recipient, r.code, r.message) for r in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return DeliveryFailed(_reply(exc.code, exc.message), permanent=exc.code >= 500)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):  # e.g. no STARTTLS: a configuration mismatch
        return DeliveryFailed(f"SMTP server lacks a required feature: {clean(exc.message)}", permanent=True)
    # Connection trouble, or a server that stopped offering STARTTLS (perhaps stripped on the way).
    return DeliveryFailed(f"SMTP failed: {type(exc).__name__}: {clean(str(exc))}")


class EmailSink:
    """Sends each delivery as one mail; a new SMTP connection per delivery (alerts are rare)."""

    def __init__(
        self, settings: EmailSettings, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.settings = settings
        self._tls = _tls_context(settings) if settings.tls or settings.starttls else None
        self._clock = clock
        self._accepted: dict[str, set[str]] = {}

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.effective_port,
            username=s.username,
            password=s.password.get_secret_value() if s.password is not None else None,
            timeout=s.timeout_seconds,
            use_tls=s.tls,
            start_tls=False if s.tls else s.starttls,  # never None: no silent plaintext fallback
            tls_context=self._tls,
        )

    def _remember(self, delivery_id: str, accepted: set[str]) -> None:
        self._accepted.pop(delivery_id, None)
        self._accepted[delivery_id] = accepted
        while len(self._accepted) > _REMEMBERED:
            del self._accepted[next(iter(self._accepted))]

    async def deliver(self, delivery: Delivery) -> None:
        done = self._accepted.get(delivery.id, set())
        pending = [r for r in self.settings.envelope_recipients if r not in done]
        message = build_message(delivery, self.settings, now=self._clock())
        try:
            async with asyncio.timeout(self.settings.timeout_seconds), self._client() as smtp:
                refused, _ = await smtp.send_message(
                    message, sender=self.settings.envelope_sender, recipients=pending
                )
        except TimeoutError as exc:
            raise DeliveryFailed(f"SMTP exchange took over {self.settings.timeout_seconds:g} s") from exc
        except aiosmtplib.SMTPException as exc:
            raise _failure(exc) from exc
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryFailed(f"SMTP connection failed: {type(exc).__name__}: {clean(str(exc))}") from exc
        if refused:
            self._remember(delivery.id, done | (set(pending) - set(refused)))
            raise _refused((rcpt, reply.code, reply.message) for rcpt, reply in refused.items())
        self._accepted.pop(delivery.id, None)

    async def close(self) -> None:
        """Nothing to release: each delivery opens and closes its own connection."""
        self._accepted.clear()
