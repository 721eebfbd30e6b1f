"""The webhook sink: an alert POSTed as JSON, signed the Standard Webhooks way.

Standard Webhooks (https://www.standardwebhooks.com) is what receivers already know how to
check: ``webhook-id`` (the outbox row id, the same on every retry, so a receiver drops duplicates),
``webhook-timestamp`` (unix seconds, so an old request cannot be replayed) and
``webhook-signature``, an HMAC-SHA256 over ``{id}.{timestamp}.{body}`` with each configured secret
(several during a rotation, so the receiver can switch secrets without losing a notification).

The body never holds chat messages: evidence entries lose their text and the ``notice`` is facts
only (see :mod:`presencebot.notice`); a ``thin`` webhook sends only the alert id and a link, for
receivers that should learn nothing but "look at the console".

Redirects are never followed: a signed alert must not be re-sent to wherever a compromised or
misconfigured endpoint points, so a 3xx is a (retryable) failure the operator has to fix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from presencebot import __version__
from presencebot.alerts import Alert
from presencebot.notice import clean, clip, notice_text
from presencebot.sinks import Delivery, DeliveryFailed

__all__ = [
    "EVENT_TYPE",
    "WebhookSettings",
    "WebhookSink",
    "alert_link",
    "decode_secret",
    "default_session",
    "failure_for",
    "payload",
    "retry_after",
    "sign",
    "verify",
]

EVENT_TYPE: Final = "alert.created"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
MIN_SECRET_BYTES: Final = 16
MAX_RETRY_AFTER: Final = 86_400.0
"""A receiver's ``Retry-After`` is honoured up to a day; beyond that it is a bug, not a plan."""
USER_AGENT: Final = f"presencebot/{__version__} (webhook)"
_DETAIL_BYTES: Final = 200
_URL_PATTERN: Final = r"^https?://\S+$"

SessionFactory = Callable[[], aiohttp.ClientSession]


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a secret: base64 after ``whsec_`` (Standard Webhooks), else UTF-8 bytes.

    Raises ``ValueError`` (without quoting the secret) when a ``whsec_`` secret is not base64.
    """
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a whsec_ secret must be base64 after the prefix") from None


class WebhookSettings(BaseModel):
    """``settings`` of a ``[[notify]]`` entry whose sink is ``webhook``."""

    # Inputs are never quoted in errors: the list of secrets would be.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str = Field(pattern=_URL_PATTERN, description="http(s) endpoint the alerts are POSTed to.")
    secrets: list[SecretStr] = Field(
        min_length=1,
        description="Signing secrets, 'whsec_<base64>' or raw text; several while rotating.",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=300, description="Whole request, connect included.")
    thin: bool = Field(default=False, description="Send only the alert id and a link, no details.")
    link_base: str | None = Field(
        default=None,
        pattern=_URL_PATTERN,
        description="Console URL for links: '{id}' is replaced by the alert id, else '/alerts/<id>' "
        "is appended.",
    )

    @field_validator("url")
    @classmethod
    def _has_host(cls, url: str) -> str:
        if not urlsplit(url).hostname:
            raise ValueError("the url needs a host name")
        return url

    @field_validator("secrets", mode="before")
    @classmethod
    def _from_environment(cls, value: object) -> object:
        """Secrets come from the environment, where a value is one string: accept one secret, or
        several separated by spaces or commas (``whsec_...`` never contains either)."""
        if isinstance(value, str):
            return [part for part in value.replace(",", " ").split() if part]
        return value

    @field_validator("secrets")
    @classmethod
    def _usable_secrets(cls, secrets: list[SecretStr]) -> list[SecretStr]:
        for index, secret in enumerate(secrets):
            key = decode_secret(secret.get_secret_value())
            if len(key) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"secret {index} is too short: use at least {MIN_SECRET_BYTES} bytes "
                    "(e.g. 'whsec_' followed by 32 random bytes in base64)"
                )
        return secrets

    def keys(self) -> list[bytes]:
        """The HMAC keys, in the order the secrets are listed."""
        return [decode_secret(s.get_secret_value()) for s in self.secrets]


# --- signing -----------------------------------------------------------------------------------


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature entry."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name from any mapping (aiohttp's is already insensitive)."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, item in headers.items():
        if key.lower() == name:
            return item
    return None


def verify(
    secret: str | SecretStr | bytes,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """Whether a received webhook is authentic and fresh (the receiver's side of :func:`sign`).

    ``secret`` is as configured (``whsec_...`` or raw text), or the key itself as bytes. True when
    one of the ``v1`` signatures matches (compared in constant time) and ``webhook-timestamp`` is
    within ``tolerance`` seconds of ``now`` either way. ``body`` must be the raw request body:
    re-serialised JSON will not match. A malformed ``whsec_`` secret raises ``ValueError``.
    """
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    key = secret if isinstance(secret, bytes) else decode_secret(secret)
    webhook_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    if not webhook_id or not stamp or not signatures:
        return False
    if not (stamp.isascii() and stamp.isdigit()):  # int() would also take " 12", "1_2", "+12"
        return False
    timestamp = int(stamp)
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    raw = body.encode() if isinstance(body, str) else body
    expected = sign(key, webhook_id, timestamp, raw).encode()
    found = False
    for entry in signatures.split():
        if entry.startswith("v1,") and hmac.compare_digest(entry.encode(), expected):
            found = True
    return found


# --- payload -----------------------------------------------------------------------------------


def alert_link(link_base: str | None, alert_id: str) -> str | None:
    """The console URL of an alert, or None when no ``link_base`` is configured."""
    if link_base is None:
        return None
    safe_id = quote(alert_id, safe="")
    if "{id}" in link_base:
        return link_base.replace("{id}", safe_id)
    return f"{link_base.rstrip('/')}/alerts/{safe_id}"


def _alert_data(alert: Alert) -> dict[str, Any]:
    """``alert.to_json()`` minus everything said in chat, plus the officer-facing notice.

    Evidence entries keep who and when (``author``, ``at``, ids) but not ``text``; the outbox rows
    (other targets and their delivery state) are dropped as none of the receiver's business.
    """
    data = alert.to_json()
    data.pop("notifications", None)
    data["evidence"] = [{k: v for k, v in item.items() if k != "text"} for item in data["evidence"]]
    data["notice"] = notice_text(alert)
    return data


def payload(alert: Alert, *, thin: bool = False, link_base: str | None = None) -> dict[str, Any]:
    """The JSON document POSTed for ``alert`` (``timestamp``: when the alert was raised)."""
    data = {"id": alert.id, "url": alert_link(link_base, alert.id)} if thin else _alert_data(alert)
    return {"type": EVENT_TYPE, "timestamp": alert.created_at.isoformat(), "data": data}


def _encode(document: dict[str, Any]) -> bytes:
    """Compact ASCII JSON: what is signed is exactly what is sent, whatever the receiver decodes."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# --- responses ---------------------------------------------------------------------------------


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay seconds or an HTTP date), if valid."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" dates are UTC with an unknown origin
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def failure_for(status: int, headers: Mapping[str, str], detail: str = "") -> DeliveryFailed:
    """What a non-2xx answer means for the dispatcher (see :class:`DeliveryFailed`)."""
    said = f"HTTP {status}" + (f": {detail}" if detail else "")
    if 300 <= status < 400:
        location = clip(clean(_header(headers, "location") or "?"), 200)
        return DeliveryFailed(f"HTTP {status} redirect to {location}: not followed, fix the url")
    if status == 410:
        return DeliveryFailed(f"{said} (the endpoint is gone)", disable=True)
    if status == 429 or status >= 500:
        return DeliveryFailed(said, retry_after=retry_after(_header(headers, "retry-after")))
    if status == 408:  # the receiver timed out reading us: transient by definition
        return DeliveryFailed(said)
    if 400 <= status < 500:
        return DeliveryFailed(said, permanent=True)
    return DeliveryFailed(f"unexpected HTTP {status}")


async def _detail(response: aiohttp.ClientResponse) -> str:
    """The start of an error body for the operator's log, cleaned (it is the receiver's text)."""
    try:
        raw = await response.content.read(_DETAIL_BYTES)
    except (aiohttp.ClientError, TimeoutError):
        return ""
    return clip(clean(raw.decode(errors="replace")), _DETAIL_BYTES)


def default_session() -> aiohttp.ClientSession:
    """A plain session; timeouts and redirects are set on each request, so any session works."""
    return aiohttp.ClientSession(headers={"user-agent": USER_AGENT})


class WebhookSink:
    """POSTs each delivery to one URL; one HTTP session for the sink's lifetime."""

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        session_factory: SessionFactory = default_session,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._keys = settings.keys()
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._clock = clock

    def _get_session(self) -> aiohttp.ClientSession:
        # Created on first use rather than in __init__: a session must be made inside the loop.
        if self._session is None or self._session.closed:
            self._session = self._session_factory()
        return self._session

    def request(self, delivery: Delivery) -> tuple[dict[str, str], bytes]:
        """The headers and body of the POST for ``delivery``, signed now."""
        body = _encode(payload(delivery.alert, thin=self.settings.thin, link_base=self.settings.link_base))
        timestamp = int(self._clock())
        signatures = " ".join(sign(key, delivery.id, timestamp, body) for key in self._keys)
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures,
        }
        return headers, body

    async def deliver(self, delivery: Delivery) -> None:
        headers, body = self.request(delivery)
        timeout = self.settings.timeout_seconds
        try:
            async with self._get_session().post(
                self.settings.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                if 200 <= response.status < 300:
                    return
                raise failure_for(response.status, response.headers, await _detail(response))
        except TimeoutError as exc:
            raise DeliveryFailed(f"no answer within {timeout:g} s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryFailed(f"request failed: {type(exc).__name__}: {clean(str(exc))}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
