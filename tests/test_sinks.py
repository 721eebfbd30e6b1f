"""Sinks against real receivers: an aiohttp web server for webhooks, aiosmtpd (with STARTTLS and
AUTH) for email, and the officer-facing notice they both carry.

The webhook receiver checks every request with :func:`presencebot.sinks.webhook.verify`, as a
real receiver would; the SMTP server presents a certificate from a throwaway CA (``certtool``)
that the client verifies through ``ca_file``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr, ValidationError

from presencebot.alerts import Alert, AlertState, EvidenceItem, Notification
from presencebot.events import Author, RoomRef
from presencebot.ids import AccountId, AlertId, EventId, RoomId
from presencebot.notice import FIRST_LINE_BYTES, notice_lines, notice_text
from presencebot.rule import Severity
from presencebot.sinks import Delivery, DeliveryFailed
from presencebot.sinks.email import EmailSettings, EmailSink, message_id
from presencebot.sinks.webhook import WebhookSettings, WebhookSink, retry_after, sign, verify
from tests.ircservers import TestCertificates, make_certificates
from tests.support import free_port

T0 = datetime(2024, 5, 1, 14, 0, 0, tzinfo=UTC)
ROOM = RoomRef("libera", RoomId("#kids"))
LILY = Author("lily", AccountId("lily-acct"))
MARK = Author("mark")
EVIDENCE = ("EVIDENCE-ONE how old r u", "EVIDENCE-TWO im 12", "EVIDENCE-THREE where do u live")
EXPLANATION = "an adult asked a minor where they live at 14:00"

SECRET_A = "whsec_" + base64.b64encode(b"A" * 24).decode()
SECRET_B = "raw rotation secret, at least 16 bytes"
WRONG = "whsec_" + base64.b64encode(b"W" * 24).decode()


def make_alert(
    *,
    target: Author = LILY,
    requester: Author | None = MARK,
    room: RoomRef = ROOM,
    category: str = "whereabouts",
    explanation: str = EXPLANATION,
    alert_id: str = "3e27b90e911e",
) -> Alert:
    authors = (requester or MARK, target, requester or MARK)
    evidence = tuple(
        EvidenceItem(EventId(f"m{n}"), f"native-{n}", author, T0 + timedelta(seconds=n), text, n == 2)
        for n, (author, text) in enumerate(zip(authors, EVIDENCE, strict=True))
    )
    return Alert(
        id=AlertId(alert_id),
        created_at=T0,
        room=room,
        rule_id="minor_whereabouts",
        rule_version="3",
        category=category,
        severity=Severity.HIGH,
        target=target,
        requester=requester,
        explanation=explanation,
        evidence=evidence,
        notifications=(Notification("row-1", "officers", "webhook"), Notification("row-2", "mail", "email")),
    )


def delivery(
    alert: Alert | None = None, *, attempt: int = 1, row: str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
) -> Delivery:
    return Delivery(id=row, alert=alert or make_alert(), attempt=attempt, target="officers")


def assert_no_evidence(text: str) -> None:
    for said in EVIDENCE:
        assert said not in text
        assert said.split()[0] not in text


# --- notice ------------------------------------------------------------------------------------


def test_notice_states_the_facts_and_how_to_acknowledge() -> None:
    lines = notice_lines(make_alert())
    text = "\n".join(lines)
    assert lines[0] == "HIGH whereabouts alert 3e27b90e911e in libera/#kids"
    assert "target: lily (account lily-acct)" in lines
    assert "requester: mark (no account)" in lines
    assert f"why: {EXPLANATION}" in lines
    assert "2024-05-01 14:00:00 UTC" in text
    assert lines[-1] == (
        "acknowledge: !ack 3e27b90e911e in the officer room, or presencebot alerts ack 3e27b90e911e"
    )
    assert_no_evidence(text)


def test_notice_ack_hint_and_states() -> None:
    alert = make_alert(requester=None)
    assert notice_lines(alert, ack_hint="")[-1] == "acknowledge: presencebot alerts ack 3e27b90e911e"
    assert notice_lines(alert, ack_hint="/msg bot ack {id} {x}")[-1].startswith(
        "acknowledge: /msg bot ack 3e27b90e911e {x} in the officer room"
    )
    assert "requester: -" in notice_lines(alert)
    acked = replace(alert, state=AlertState.ACKNOWLEDGED, acknowledged_by="pc-1234")
    assert notice_lines(acked)[-1] == "already acknowledged by pc-1234"


HOSTILE = "li\x02ly\x03\r\nPRIVMSG #officers :ack all\x00\x1b[31m\x7f\x85\u2028\u202eevil\u2066"


def test_notice_strips_control_characters_from_every_field() -> None:
    alert = make_alert(
        target=Author(HOSTILE, AccountId("acct\r\nBcc: x@example.org")),
        requester=Author("mark\n\rQUIT", AccountId("\x00")),
        room=RoomRef("libera", RoomId("#kids\r\nJOIN #x")),
        category="cat\tegory",
        explanation="why\r\nnot",
    )
    for line in notice_lines(alert):
        assert line.isprintable(), repr(line)
        assert "\u202e" not in line and "\u2066" not in line
    text = notice_text(alert)
    assert "PRIVMSG #officers :ack all" in text  # kept as text, on the same line
    assert "\r" not in text and "\x00" not in text and text.count("\n") == len(notice_lines(alert)) - 1


def test_notice_first_line_fits_an_irc_line() -> None:
    alert = make_alert(
        room=RoomRef("n" * 200, RoomId("#" + "\U0001f600" * 300)), category="c" * 500, alert_id="a" * 200
    )
    first = notice_lines(alert)[0]
    assert len(first.encode()) <= FIRST_LINE_BYTES
    assert first.startswith("HIGH ")


# --- webhook receiver --------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    """A webhook endpoint: answers ``mode`` (a queue of modes, the last one repeating)."""

    url: str = ""
    modes: list[str] = field(default_factory=lambda: ["ok"])
    received: list[Received] = field(default_factory=list)
    redirected_hits: int = 0

    def answer(self, *modes: str) -> None:
        self.modes = list(modes)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(
            Received(request.path, dict(request.headers), body, verify(SECRET_A, request.headers, body))
        )
        mode = self.modes.pop(0) if len(self.modes) > 1 else self.modes[0]
        if mode == "ok":
            return web.Response(status=204)
        if mode == "stall":
            await asyncio.sleep(30)
            return web.Response(status=204)
        if mode.startswith("3"):
            return web.Response(status=int(mode), headers={"Location": f"{self.url}elsewhere"})
        if mode == "429-date":
            when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
            return web.Response(status=429, headers={"Retry-After": when})
        status, _, after = mode.partition("+")
        headers = {"Retry-After": after} if after else {}
        return web.Response(status=int(status), text="nope\r\n\x1b[31m", headers=headers)

    async def elsewhere(self, request: web.Request) -> web.StreamResponse:
        self.redirected_hits += 1
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    app.router.add_route("*", "/elsewhere", recv.elsewhere)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    recv.url = f"http://{host}:{port}/"
    try:
        yield recv
    finally:
        await runner.cleanup()


@pytest.fixture
async def make_sink(receiver: Receiver) -> AsyncIterator[Any]:
    sinks: list[WebhookSink] = []

    def make(**overrides: Any) -> WebhookSink:
        values: dict[str, Any] = {"url": f"{receiver.url}hook", "secrets": [SECRET_A, SECRET_B]}
        values.update(overrides)
        clock = values.pop("clock", time.time)
        sink = WebhookSink(WebhookSettings.model_validate(values), clock=clock)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        await sink.close()


# --- webhook: signatures -----------------------------------------------------------------------


async def test_webhook_signature_verifies_with_each_rotated_secret(
    receiver: Receiver, make_sink: Any
) -> None:
    d = delivery()
    await make_sink().deliver(d)
    [got] = receiver.received
    assert got.verified
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["webhook-id"] == d.id
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 5
    entries = got.headers["webhook-signature"].split(" ")
    assert len(entries) == 2 and all(e.startswith("v1,") for e in entries)
    assert verify(SECRET_A, got.headers, got.body)
    assert verify(SECRET_B, got.headers, got.body)
    assert verify(SecretStr(SECRET_B), got.headers, got.body.decode())
    assert verify(base64.b64decode(SECRET_A[6:]), got.headers, got.body)
    assert not verify(WRONG, got.headers, got.body)


async def test_webhook_signature_rejects_old_timestamps_and_modified_bodies(
    receiver: Receiver, make_sink: Any
) -> None:
    await make_sink().deliver(delivery())
    [got] = receiver.received
    ts = int(got.headers["webhook-timestamp"])
    assert verify(SECRET_A, got.headers, got.body, now=ts + 299)
    assert not verify(SECRET_A, got.headers, got.body, now=ts + 301)
    assert not verify(SECRET_A, got.headers, got.body, now=ts - 301)
    assert not verify(SECRET_A, got.headers, got.body, now=ts + 30, tolerance=10)
    tampered = got.body.replace(b'"severity":"high"', b'"severity":"low!"')
    assert tampered != got.body
    assert not verify(SECRET_A, got.headers, tampered)
    # A replayed signature under a fresh timestamp, another id, or mangled headers all fail.
    assert not verify(SECRET_A, {**got.headers, "webhook-timestamp": str(ts + 1)}, got.body)
    assert not verify(SECRET_A, {**got.headers, "webhook-id": "other"}, got.body)
    for bad in (" " + str(ts), "1_7", "+" + str(ts), ""):
        assert not verify(SECRET_A, {**got.headers, "webhook-timestamp": bad}, got.body)
    assert not verify(SECRET_A, {k: v for k, v in got.headers.items() if k != "webhook-signature"}, got.body)
    lower = {k.lower(): v for k, v in got.headers.items()}
    assert verify(SECRET_A, lower, got.body)


def test_sign_matches_the_standard_webhooks_reference_vector() -> None:
    # The example from the Standard Webhooks specification and its reference libraries.
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    assert (
        sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


async def test_webhook_retry_keeps_the_webhook_id_and_body(receiver: Receiver, make_sink: Any) -> None:
    times = iter([1_700_000_000.0, 1_700_000_060.0])
    sink = make_sink(clock=lambda: next(times))
    receiver.answer("500", "ok")
    d = delivery()
    with pytest.raises(DeliveryFailed) as failed:
        await sink.deliver(d)
    assert not failed.value.permanent
    await sink.deliver(replace(d, attempt=2))
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == d.id
    assert first.body == second.body
    assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]
    for got in (first, second):
        ts = int(got.headers["webhook-timestamp"])
        assert verify(SECRET_B, got.headers, got.body, now=ts)


# --- webhook: responses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "permanent", "disable", "after"),
    [
        ("500", False, False, None),
        ("502", False, False, None),
        ("503+7", False, False, 7.0),
        ("429+7", False, False, 7.0),
        ("429+bogus", False, False, None),
        ("408", False, False, None),
        ("410", True, True, None),
        ("400", True, False, None),
        ("401", True, False, None),
        ("403", True, False, None),
        ("404", True, False, None),
        ("422", True, False, None),
    ],
)
async def test_webhook_status_classes(
    receiver: Receiver, make_sink: Any, mode: str, permanent: bool, disable: bool, after: float | None
) -> None:
    receiver.answer(mode)
    with pytest.raises(DeliveryFailed) as failed:
        await make_sink().deliver(delivery())
    exc = failed.value
    assert (exc.permanent, exc.disable, exc.retry_after) == (permanent, disable, after)
    assert exc.reason.startswith(f"HTTP {mode[:3]}")
    assert exc.reason.isprintable()  # the receiver's body is quoted, cleaned


async def test_webhook_retry_after_as_http_date(receiver: Receiver, make_sink: Any) -> None:
    receiver.answer("429-date")
    with pytest.raises(DeliveryFailed) as failed:
        await make_sink().deliver(delivery())
    assert failed.value.retry_after is not None
    assert 110 <= failed.value.retry_after <= 121
    assert not failed.value.permanent


def test_retry_after_parsing() -> None:
    now = datetime(2024, 5, 1, 14, 0, 0, tzinfo=UTC)
    assert retry_after("120", now=now) == 120.0
    assert retry_after("Wed, 01 May 2024 14:01:00 GMT", now=now) == 60.0
    assert retry_after("Wed, 01 May 2024 13:00:00 GMT", now=now) == 0.0
    assert retry_after("99999999", now=now) == 86_400.0
    assert retry_after("-5", now=now) is None
    assert retry_after("soon", now=now) is None
    assert retry_after(None) is None


@pytest.mark.parametrize("status", ["301", "302", "307", "308"])
async def test_webhook_redirects_are_not_followed(receiver: Receiver, make_sink: Any, status: str) -> None:
    receiver.answer(status)
    with pytest.raises(DeliveryFailed) as failed:
        await make_sink().deliver(delivery())
    assert not failed.value.permanent and not failed.value.disable
    assert "redirect" in failed.value.reason
    assert receiver.redirected_hits == 0
    assert [r.path for r in receiver.received] == ["/hook"]


async def test_webhook_timeout_is_retryable(receiver: Receiver, make_sink: Any) -> None:
    receiver.answer("stall")
    started = time.monotonic()
    with pytest.raises(DeliveryFailed) as failed:
        await make_sink(timeout_seconds=0.3).deliver(delivery())
    assert time.monotonic() - started < 3
    assert not failed.value.permanent
    assert "no answer" in failed.value.reason


async def test_webhook_connection_refused_is_retryable(make_sink: Any) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        await make_sink(url=f"http://127.0.0.1:{free_port()}/hook").deliver(delivery())
    assert not failed.value.permanent


async def test_webhook_session_is_reused_and_closed(receiver: Receiver, make_sink: Any) -> None:
    sink = make_sink()
    await sink.deliver(delivery())
    session = sink._session
    await sink.deliver(delivery(row="second"))
    assert sink._session is session and session is not None
    await sink.close()
    assert session.closed
    await sink.close()  # idempotent


# --- webhook: payloads -------------------------------------------------------------------------


async def test_webhook_full_payload_has_no_chat_text(receiver: Receiver, make_sink: Any) -> None:
    await make_sink().deliver(delivery())
    [got] = receiver.received
    assert_no_evidence(got.body.decode())
    document = json.loads(got.body)
    assert document["type"] == "alert.created"
    assert document["timestamp"] == T0.isoformat()
    data = document["data"]
    assert data["id"] == "3e27b90e911e"
    assert data["target"] == {"nick": "lily", "account": "lily-acct"}
    assert data["requester"] == {"nick": "mark", "account": None}
    assert data["explanation"] == EXPLANATION
    assert data["notice"] == notice_text(make_alert())
    assert "notifications" not in data
    assert len(data["evidence"]) == 3
    assert all("text" not in e for e in data["evidence"])
    assert [e["flagged"] for e in data["evidence"]] == [False, False, True]
    assert got.body.isascii()


@pytest.mark.parametrize(
    ("link_base", "url"),
    [
        ("https://console.example/", "https://console.example/alerts/3e27b90e911e"),
        ("https://console.example/a?id={id}", "https://console.example/a?id=3e27b90e911e"),
        (None, None),
    ],
)
async def test_webhook_thin_payload_is_id_and_link_only(
    receiver: Receiver, make_sink: Any, link_base: str | None, url: str | None
) -> None:
    await make_sink(thin=True, link_base=link_base).deliver(delivery())
    [got] = receiver.received
    assert got.verified
    document = json.loads(got.body)
    assert document["data"] == {"id": "3e27b90e911e", "url": url}
    assert set(document) == {"type", "timestamp", "data"}
    body = got.body.decode()
    assert_no_evidence(body)
    for private in ("lily", "mark", EXPLANATION, "whereabouts", "#kids"):
        assert private not in body


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"secrets": []}, "at least 1"),
        ({"secrets": ["whsec_not*base64!"]}, "base64"),
        ({"secrets": ["short"]}, "too short"),
        ({"url": "ftp://example.org/hook"}, "pattern"),
        ({"url": "https:///hook"}, "host"),
        ({"link_base": "javascript:alert(1)"}, "pattern"),
        ({"bogus": 1}, "Extra inputs"),
    ],
)
def test_webhook_settings_validation(overrides: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"url": "https://example.org/hook", "secrets": [SECRET_A], **overrides}
    with pytest.raises(ValidationError) as error:
        WebhookSettings.model_validate(values)
    assert message in str(error.value)
    assert "not*base64" not in str(error.value)  # secrets are never echoed


def test_webhook_settings_keys() -> None:
    settings = WebhookSettings(url="https://example.org/", secrets=[SecretStr(SECRET_A), SecretStr(SECRET_B)])
    assert settings.keys() == [b"A" * 24, SECRET_B.encode()]
    assert SECRET_B not in repr(settings)


# --- SMTP server -------------------------------------------------------------------------------

USER, PASSWORD = "presencebot", "correct horse battery staple"


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    login: bytes | None

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class MailHandler:
    """Collects mail; ``rcpt_replies`` / ``data_reply`` make the server refuse on demand."""

    mails: list[Mail] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        assert isinstance(envelope.content, bytes) and envelope.mail_from is not None
        login = session.auth_data if isinstance(session.auth_data, bytes) else None
        mail = Mail(
            envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.ssl is not None, login
        )
        self.mails.append(mail)
        return "250 Message accepted for delivery"


def authenticator(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False, auth_data=USER.encode() if ok else None)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    if shutil.which("certtool") is None:
        pytest.skip("certtool (gnutls-bin) is not installed")
    return make_certificates(tmp_path_factory.mktemp("smtp-certs"))


@dataclass
class SmtpServer:
    port: int
    handler: MailHandler
    ca_file: Path

    def settings(self, **overrides: Any) -> EmailSettings:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "username": USER,
            "password": PASSWORD,
            "sender": "presencebot <alerts@police.example>",
            "recipients": ["duty@police.example", "Sergeant <sgt@police.example>"],
            "timeout_seconds": 2,
            "ca_file": self.ca_file,
        }
        values.update(overrides)
        return EmailSettings.model_validate(values)


@pytest.fixture
def smtp_server(certificates: TestCertificates) -> Iterator[SmtpServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.cert_file, certificates.key_file)
    handler = MailHandler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        server_hostname="smtp.police.example",
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield SmtpServer(port, handler, certificates.ca_file)
    finally:
        controller.stop()


# --- email -------------------------------------------------------------------------------------


async def test_email_arrives_over_starttls_with_subject_body_and_message_id(smtp_server: SmtpServer) -> None:
    d = delivery()
    sink = EmailSink(smtp_server.settings(link_base="https://console.example"))
    await sink.deliver(d)
    await sink.close()
    [mail] = smtp_server.handler.mails
    assert mail.tls and mail.login == USER.encode()
    assert mail.mail_from == "alerts@police.example"
    assert mail.rcpt_tos == ["duty@police.example", "sgt@police.example"]
    message = mail.message
    assert message["Subject"] == "[presencebot] HIGH whereabouts alert 3e27b90e911e in libera/#kids"
    assert message["Message-ID"] == f"<{d.id}.presencebot@police.example>"
    assert message["From"] == "presencebot <alerts@police.example>"
    assert message["To"] == "duty@police.example, Sergeant <sgt@police.example>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] is not None
    body = message.get_content().replace("\r\n", "\n")
    assert notice_text(make_alert()) in body
    assert "presencebot alerts show 3e27b90e911e" in body
    assert "https://console.example/alerts/3e27b90e911e" in body
    assert_no_evidence(mail.content.decode())


async def test_email_retry_keeps_the_message_id(smtp_server: SmtpServer) -> None:
    sink = EmailSink(smtp_server.settings())
    d = delivery()
    await sink.deliver(d)
    await sink.deliver(replace(d, attempt=2))
    first, second = (m.message["Message-ID"] for m in smtp_server.handler.mails)
    assert first == second == message_id(d.id, "alerts@police.example")


async def test_email_crlf_in_chat_names_cannot_inject_headers(smtp_server: SmtpServer) -> None:
    alert = make_alert(
        target=Author("lily\r\nBcc: victim@example.org", AccountId("a\nX-Injected: 1")),
        requester=Author("mark\r\n\r\nbody injection"),
        room=RoomRef("libera", RoomId("#kids\r\nX-Room-Injected: 1\r\n")),
        category="whereabouts\nSubject: spoofed",
    )
    await EmailSink(smtp_server.settings(recipients=["duty@police.example"])).deliver(delivery(alert))
    [mail] = smtp_server.handler.mails
    assert mail.rcpt_tos == ["duty@police.example"]
    message = mail.message
    names = {k.lower() for k in message.keys()}  # noqa: SIM118 - keys() is the header list
    assert not names & {"bcc", "x-injected", "x-room-injected"}
    assert len(message.get_all("Subject") or []) == 1
    subject = str(message["Subject"])
    assert "\r" not in subject and "\n" not in subject
    assert subject.startswith("[presencebot] HIGH whereabouts Subject: spoofed alert")
    assert "Bcc: victim@example.org" in message.get_content()  # still readable, as text


@pytest.mark.parametrize(
    ("refusal", "permanent"),
    [("550 5.1.1 no such user", True), ("450 4.2.1 mailbox busy", False)],
)
async def test_email_refused_recipient(smtp_server: SmtpServer, refusal: str, permanent: bool) -> None:
    smtp_server.handler.rcpt_replies = {"duty@police.example": refusal}
    with pytest.raises(DeliveryFailed) as failed:
        await EmailSink(smtp_server.settings(recipients=["duty@police.example"])).deliver(delivery())
    assert failed.value.permanent is permanent
    assert refusal[:3] in failed.value.reason


@pytest.mark.parametrize(
    ("reply", "permanent"), [("554 5.6.0 rejected", True), ("451 4.3.0 try again later", False)]
)
async def test_email_data_refused(smtp_server: SmtpServer, reply: str, permanent: bool) -> None:
    smtp_server.handler.data_reply = reply
    with pytest.raises(DeliveryFailed) as failed:
        await EmailSink(smtp_server.settings()).deliver(delivery())
    assert failed.value.permanent is permanent


async def test_email_partial_refusal_retries_only_the_rest(smtp_server: SmtpServer) -> None:
    handler = smtp_server.handler
    handler.rcpt_replies = {"sgt@police.example": "452 4.2.2 mailbox full"}
    sink = EmailSink(smtp_server.settings())
    d = delivery()
    with pytest.raises(DeliveryFailed) as failed:
        await sink.deliver(d)
    assert not failed.value.permanent
    handler.rcpt_replies = {}
    await sink.deliver(replace(d, attempt=2))
    first, second = handler.mails
    assert first.rcpt_tos == ["duty@police.example"]
    assert second.rcpt_tos == ["sgt@police.example"]
    assert first.message["Message-ID"] == second.message["Message-ID"]


async def test_email_wrong_password_is_permanent(smtp_server: SmtpServer) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        await EmailSink(smtp_server.settings(password="wrong")).deliver(delivery())
    assert failed.value.permanent
    assert "wrong" not in failed.value.reason
    assert smtp_server.handler.mails == []


async def test_email_untrusted_certificate_is_not_accepted(smtp_server: SmtpServer) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        await EmailSink(smtp_server.settings(ca_file=None)).deliver(delivery())
    assert not failed.value.permanent
    assert smtp_server.handler.mails == []


async def test_email_connection_refused_is_retryable(smtp_server: SmtpServer) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        await EmailSink(smtp_server.settings(port=free_port())).deliver(delivery())
    assert not failed.value.permanent


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"recipients": []}, "at least 1"),
        ({"recipients": ["not an address"]}, "not an email address"),
        ({"sender": "alerts@police.example\r\nBcc: x@example.org"}, "control characters"),
        ({"starttls": False}, "never sent without TLS"),
        ({"tls": True, "starttls": True}, "choose one"),
        ({"password": None}, "go together"),
    ],
)
def test_email_settings_validation(overrides: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {
        "host": "smtp.police.example",
        "username": USER,
        "password": PASSWORD,
        "sender": "alerts@police.example",
        "recipients": ["duty@police.example"],
        **overrides,
    }
    with pytest.raises(ValidationError) as error:
        EmailSettings.model_validate(values)
    assert message in str(error.value)
    assert PASSWORD not in str(error.value)


def test_email_settings_ports() -> None:
    base = {"host": "smtp.example", "sender": "a@example.org", "recipients": ["b@example.org"]}
    assert EmailSettings.model_validate(base).effective_port == 587
    assert EmailSettings.model_validate({**base, "tls": True}).effective_port == 465
    assert EmailSettings.model_validate({**base, "tls": True, "port": 2465}).effective_port == 2465


def test_message_id_is_stable_and_safe() -> None:
    assert message_id("abc123", "x@police.example") == "<abc123.presencebot@police.example>"
    odd = message_id("a b>\r\n<c", "bad domain <x@[1.2.3.4]>")
    assert odd == message_id("a b>\r\n<c", "bad domain <x@[1.2.3.4]>")
    assert odd.endswith("@presencebot.invalid>") and odd.isprintable() and " " not in odd
