"""The officers' console accounts: users, passwords, an optional TOTP second factor, sessions.

These are plain functions on a ``sqlite3.Connection`` (tables from migration 4), run on the store's
thread by :meth:`~presencebot.store.sql.SQLStore.transaction` or ``.read`` (on PostgreSQL, a
:class:`~presencebot.store.postgres.PgConnection` with the same API). The console shows
evidence about children, so the choices lean towards safety over convenience:

* Passwords are hashed with argon2id (parameters pinned below, not left to the library's defaults,
  so that an upgrade of argon2-cffi cannot silently weaken them); a hash made with older parameters
  is upgraded on the next successful login.
* Five consecutive failures lock the account for ten minutes, even against the right password;
  attempts made while locked neither count nor extend the lock, so an attacker cannot keep an
  officer locked out for longer than one period per five guesses.
* Whatever went wrong, the person logging in reads the same message; the precise reason travels in
  :attr:`LoginFailed.why` for the audit log only.
* Sessions live on the server and are revocable; the database holds only the SHA-256 of each
  session token, so a copy of the file does not let anyone into the console.

All times are timezone-aware and stored as UTC ISO 8601 strings; every function takes ``now`` from
the caller so that tests (and the audit log) use one clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, NoReturn

import pyotp
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from presencebot.errors import PresencebotError
from presencebot.store.sql import is_unique_violation

# --- errors --------------------------------------------------------------------------------------


class AccountError(PresencebotError):
    """An account operation was refused (bad input, unknown user, disabled account)."""


class InvalidAccount(AccountError):
    """A field of a new or changed account breaks a rule (the message says which and why)."""


class InvalidUsername(InvalidAccount):
    """The username does not match ``^[a-z0-9][a-z0-9._-]{1,31}$``."""


class WeakPassword(InvalidAccount):
    """The password fails the policy; ``problems`` lists every reason, for the form to show."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("password rejected: " + "; ".join(problems))


class UserExists(AccountError):
    """An account with that username already exists."""


class UserNotFound(AccountError):
    """No account has that username (for admin operations; logins fail with :class:`LoginFailed`)."""


class LoginFailed(AccountError):
    """A login was refused.

    ``str(exc)`` and :attr:`reason` are the same for every cause, so the login page cannot be used
    to find out which usernames exist, which accounts are locked or which passwords are right.
    :attr:`why` is the precise cause, for the audit log only: ``unknown_user``, ``bad_password``,
    ``bad_totp``, ``locked`` or ``disabled``.
    """

    REASON: Final = "wrong username, password or code"

    def __init__(self, why: str, username: str = "") -> None:
        self.why = why
        self.username = username
        self.reason = self.REASON
        super().__init__(self.REASON)


# --- roles and users ----------------------------------------------------------------------------


class Role(StrEnum):
    """What an account may do in the console.

    ========== ======== ================================== ============
    role       can act  sees alerts of                     manages users
    ========== ======== ================================== ============
    officer    yes      its own force, and force-less ones no
    supervisor yes      every force                        no
    auditor    no       every force (read-only oversight)  no
    admin      yes      every force                        yes
    ========== ======== ================================== ============

    Auditors review how alerts were handled across the whole deployment, so they see everything a
    supervisor sees; they may not claim, dispose of or otherwise change anything.
    """

    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    ADMIN = "admin"


_ACTING_ROLES: Final = frozenset({Role.OFFICER, Role.SUPERVISOR, Role.ADMIN})
_ALL_FORCES_ROLES: Final = frozenset({Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN})


@dataclass(frozen=True, slots=True)
class User:
    """A console account as the rest of presencebot sees it (never with its secrets).

    The permission helpers answer ``False`` for a disabled account, so a stale ``User`` held past
    :func:`disable_user` cannot be used to act.
    """

    id: int
    username: str
    public_id: str
    """The identifier the officer signs interventions with in the rooms, e.g. ``PC 4521``."""
    force: str
    role: Role
    has_totp: bool
    disabled: bool
    locked_until: datetime | None

    @property
    def can_act(self) -> bool:
        """May change alerts (claim, dispose, intervene); auditors only read."""
        return not self.disabled and self.role in _ACTING_ROLES

    @property
    def sees_all_forces(self) -> bool:
        """Sees every force's alerts (supervisor, auditor, admin); use it to filter queries."""
        return not self.disabled and self.role in _ALL_FORCES_ROLES

    @property
    def may_manage_users(self) -> bool:
        return not self.disabled and self.role is Role.ADMIN

    def may_see(self, alert_force: str | None) -> bool:
        """Whether this account may see an alert handled by ``alert_force``.

        An alert with no force comes from a deployment without a duty roster, where every officer
        is on the one team: everyone sees it. Force names compare exactly, as the roster does.
        """
        if self.disabled:
            return False
        return self.sees_all_forces or alert_force is None or alert_force == self.force

    def locked(self, now: datetime) -> bool:
        """Whether logins are refused at ``now`` because of too many failures."""
        return self.locked_until is not None and _utc(now) < self.locked_until


# --- validation ---------------------------------------------------------------------------------

_USERNAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")
MIN_PASSWORD: Final = 12
MAX_PASSWORD: Final = 1024
"""Long enough for any passphrase; bounded so a login form cannot be used to make us hash megabytes."""

# Words and runs that make a password guessable; what is left after removing them must still be
# at least eight characters. Deliberately short: the length rule does most of the work.
_OBVIOUS: Final = (
    "password",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "qwerty",
    "azerty",
    "asdfgh",
    "letmein",
    "welcome",
    "iloveyou",
    "changeme",
    "secret",
    "admin",
    "police",
    "presencebot",
    "123456",
    "654321",
    "abcdef",
    "111111",
    "000000",
)


def normalize_username(username: str) -> str:
    """Usernames are case-insensitive: ``Alice`` and ``alice`` are one account."""
    return username.strip().lower()


def check_username(username: str) -> str:
    """The normalized username, or :class:`InvalidUsername` saying what is wrong."""
    name = normalize_username(username)
    if not _USERNAME.fullmatch(name):
        raise InvalidUsername(
            f"invalid username {username!r}: use 2 to 32 characters, lower-case letters, digits, '.', "
            "'_' or '-', starting with a letter or a digit"
        )
    return name


def check_password(password: str, *, username: str, public_id: str = "") -> None:
    """Raise :class:`WeakPassword` listing every problem, or return if the password is acceptable."""
    problems: list[str] = []
    if len(password) < MIN_PASSWORD:
        problems.append(f"it must be at least {MIN_PASSWORD} characters long (it has {len(password)})")
    if len(password) > MAX_PASSWORD:
        problems.append(f"it must be at most {MAX_PASSWORD} characters long")
    lowered = password.lower()
    if len(set(lowered)) < 5:
        problems.append("it uses too few different characters")
    personal = (normalize_username(username), re.sub(r"\s+", "", public_id.lower()))
    rest = lowered
    for word in (*[w for w in personal if len(w) >= 3], *_OBVIOUS):
        rest = rest.replace(word, "")
    if len(password) >= MIN_PASSWORD and len(rest) < 8:
        problems.append("it is mostly the username, the public id or a common password or sequence")
    if problems:
        raise WeakPassword(problems)


def _check_text(field: str, value: str, longest: int) -> str:
    text = value.strip()
    if not text or len(text) > longest or any(not c.isprintable() for c in text):
        raise InvalidAccount(f"invalid {field} {value!r}: 1 to {longest} printable characters")
    return text


def _check_role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidAccount(f"invalid role {role!r}: one of {', '.join(r.value for r in Role)}") from None


def _utc(now: datetime) -> datetime:
    """``now`` in UTC; a naive datetime is refused rather than guessed (local? UTC?)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("accounts need timezone-aware datetimes")
    return now.astimezone(UTC)


# --- passwords ----------------------------------------------------------------------------------

HASHER = PasswordHasher(
    time_cost=3,
    memory_cost=64 * 1024,  # KiB: 64 MiB
    parallelism=4,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)
"""argon2id with RFC 9106's second recommended option (t=3, m=64 MiB, p=4), pinned explicitly.

About 50-100 ms a hash on a server core: cheap for a login, costly for offline guessing. Raising
these later is safe: :func:`authenticate` rehashes each password on its next successful login.
"""

_dummy_hashes: dict[tuple[int, int, int], str] = {}


def _hash(password: str) -> str:
    return HASHER.hash(password)


def _verify(stored: str, password: str) -> bool:
    try:
        return HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _burn_time(password: str) -> None:
    """Verify against a dummy hash, so an unknown, locked or disabled user answers as slowly as a
    real one and the response time does not tell which usernames exist."""
    key = (HASHER.time_cost, HASHER.memory_cost, HASHER.parallelism)
    dummy = _dummy_hashes.get(key)
    if dummy is None:
        dummy = _dummy_hashes[key] = HASHER.hash(secrets.token_urlsafe(16))
    _verify(dummy, password)


# --- TOTP ---------------------------------------------------------------------------------------

TOTP_ISSUER: Final = "presencebot"
TOTP_STEP: Final = 30
"""Seconds per code; with a window of one step either side, a code lives 60-90 s."""
TOTP_WINDOW: Final = 1
_TOTP_CODE: Final = re.compile(r"[0-9]{6}")


def _split_totp(stored: str) -> tuple[str, int]:
    """``users.totp_secret`` holds ``"<base32 secret>|<last used counter>"`` (-1: never used).

    Keeping the counter next to the secret lets a login refuse a code that was already used (an
    observer of the screen or the network replaying it) without a schema change.
    """
    secret, _, last = stored.partition("|")
    return secret, int(last) if last else -1


def _totp_uri(username: str, secret: str) -> str:
    return pyotp.TOTP(secret, interval=TOTP_STEP).provisioning_uri(name=username, issuer_name=TOTP_ISSUER)


def _totp_counter(stored: str, code: str | None, now: datetime) -> int | None:
    """The counter of the step ``code`` belongs to, if it is valid at ``now`` and newer than the last
    code used (which refuses a replay, and any older code, within the window)."""
    if code is None:
        return None
    code = code.replace(" ", "")
    if not _TOTP_CODE.fullmatch(code):
        return None
    secret, last = _split_totp(stored)
    totp = pyotp.TOTP(secret, interval=TOTP_STEP)
    current = totp.timecode(now)
    for counter in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        if counter > last and hmac.compare_digest(totp.generate_otp(counter), code):
            return counter
    return None


# --- users --------------------------------------------------------------------------------------

_SELECT_USER = (
    "SELECT id, username, public_id, force, role, totp_secret IS NOT NULL, disabled, locked_until FROM users"
)


def _user(r: Sequence[object]) -> User:
    return User(
        id=int(str(r[0])),
        username=str(r[1]),
        public_id=str(r[2]),
        force=str(r[3]),
        role=Role(str(r[4])),
        has_totp=bool(r[5]),
        disabled=bool(r[6]),
        locked_until=None if r[7] is None else datetime.fromisoformat(str(r[7])),
    )


def _get_by_id(conn: sqlite3.Connection, user_id: int) -> User | None:
    row = conn.execute(_SELECT_USER + " WHERE id = ?", (user_id,)).fetchone()
    return None if row is None else _user(row)


def get_user(conn: sqlite3.Connection, username: str) -> User | None:
    row = conn.execute(_SELECT_USER + " WHERE username = ?", (normalize_username(username),)).fetchone()
    return None if row is None else _user(row)


def _require(conn: sqlite3.Connection, username: str) -> User:
    user = get_user(conn, username)
    if user is None:
        raise UserNotFound(f"no account named {username!r}")
    return user


def list_users(conn: sqlite3.Connection) -> list[User]:
    return [_user(r) for r in conn.execute(_SELECT_USER + " ORDER BY username")]


def add_user(
    conn: sqlite3.Connection,
    *,
    username: str,
    password: str,
    public_id: str,
    force: str,
    role: Role | str,
    totp: bool = False,
    now: datetime,
) -> tuple[User, str | None]:
    """Create an account; with ``totp``, also return its ``otpauth://`` provisioning URI.

    The URI (it contains the secret) is returned once, to be shown as a QR code or text to the
    officer enrolling; it cannot be read back later, only replaced with :func:`reset_totp`.
    """
    name = check_username(username)
    public_id = _check_text("public id", public_id, 40)
    force = _check_text("force", force, 64)
    checked_role = _check_role(role)
    check_password(password, username=name, public_id=public_id)
    if get_user(conn, name) is not None:
        raise UserExists(f"an account named {name!r} already exists")
    secret = pyotp.random_base32() if totp else None
    try:
        conn.execute(
            "INSERT INTO users (username, public_id, force, role, password_hash, totp_secret, created_at)"
            " VALUES (?,?,?,?,?,?,?)",
            (
                name,
                public_id,
                force,
                checked_role.value,
                _hash(password),
                None if secret is None else f"{secret}|-1",
                _utc(now).isoformat(),
            ),
        )
    except Exception as exc:
        if not is_unique_violation(exc):
            raise
        # A concurrent add from another process (SQLite or PostgreSQL alike).
        raise UserExists(f"an account named {name!r} already exists") from exc
    return _require(conn, name), None if secret is None else _totp_uri(name, secret)


def disable_user(conn: sqlite3.Connection, username: str) -> User:
    """Disable an account and end its sessions now (an officer leaving, a suspected compromise)."""
    user = _require(conn, username)
    conn.execute("UPDATE users SET disabled = 1 WHERE id = ?", (user.id,))
    revoke_all(conn, user.id)
    return _require(conn, username)


def enable_user(conn: sqlite3.Connection, username: str) -> User:
    """Re-enable a disabled account; its old sessions stay revoked, so the officer logs in again."""
    user = _require(conn, username)
    conn.execute("UPDATE users SET disabled = 0 WHERE id = ?", (user.id,))
    return _require(conn, username)


def reset_password(conn: sqlite3.Connection, username: str, new_password: str, *, now: datetime) -> User:
    """Set a new password, clear any lockout and end every session of the account.

    Ending the sessions matters when the reset answers a suspected compromise: whoever knew the
    old password must not stay logged in. ``now`` is accepted for the caller's audit record and
    checked for awareness like everywhere else.
    """
    _utc(now)
    user = _require(conn, username)
    check_password(new_password, username=user.username, public_id=user.public_id)
    conn.execute(
        "UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = NULL WHERE id = ?",
        (_hash(new_password), user.id),
    )
    revoke_all(conn, user.id)
    return _require(conn, username)


def reset_totp(conn: sqlite3.Connection, username: str, *, enable: bool = True) -> str | None:
    """Give the account a new TOTP secret (returning its provisioning URI), or remove TOTP.

    For a lost phone: the old secret stops working at once. Sessions are not ended; pair it with
    :func:`revoke_all` when the phone may be in someone else's hands.
    """
    user = _require(conn, username)
    secret = pyotp.random_base32() if enable else None
    conn.execute(
        "UPDATE users SET totp_secret = ? WHERE id = ?",
        (None if secret is None else f"{secret}|-1", user.id),
    )
    return None if secret is None else _totp_uri(user.username, secret)


# --- login --------------------------------------------------------------------------------------


def authenticate(
    conn: sqlite3.Connection,
    username: str,
    password: str,
    totp_code: str | None,
    *,
    now: datetime,
    max_failures: int = 5,
    lockout: timedelta = timedelta(minutes=10),
) -> User:
    """Check a login; return the user, or raise :class:`LoginFailed`.

    A wrong password or code counts as a failure; the ``max_failures``-th in a row locks the account
    for ``lockout`` (and restarts the count). A success resets the count and rehashes the password if
    :data:`HASHER`'s parameters changed since it was set.

    Transactions: the failure count must survive the exception. When called inside a transaction
    (``store.transaction``), a failure therefore COMMITs it before raising and opens a fresh one for
    the caller to roll back; each update is also a single statement, so ``store.read`` (autocommit)
    is correct too. Do not put other work in a login's transaction expecting it to roll back.
    """
    now = _utc(now)
    name = normalize_username(username)
    row = conn.execute(
        "SELECT id, password_hash, totp_secret, disabled, locked_until FROM users WHERE username = ?",
        (name,),
    ).fetchone()
    if row is None:
        _burn_time(password)
        _fail(conn, "unknown_user", name)
    user_id, stored_hash, totp_secret, disabled, locked_until = row
    if disabled:
        _burn_time(password)
        _fail(conn, "disabled", name)
    if locked_until is not None and now < datetime.fromisoformat(locked_until):
        _burn_time(password)
        _fail(conn, "locked", name)

    if not _verify(stored_hash, password):
        _count_failure(conn, user_id, now, max_failures, lockout)
        _fail(conn, "bad_password", name)
    if totp_secret is not None and not _consume_totp(conn, user_id, totp_secret, totp_code, now):
        _count_failure(conn, user_id, now, max_failures, lockout)
        _fail(conn, "bad_totp", name)

    conn.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?", (user_id,))
    if HASHER.check_needs_rehash(stored_hash):
        conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (_hash(password), user_id))
    user = _get_by_id(conn, user_id)
    assert user is not None
    return user


def _consume_totp(
    conn: sqlite3.Connection, user_id: int, stored: str, code: str | None, now: datetime
) -> bool:
    """Accept ``code`` and record its step as used; ``False`` if it is missing, wrong or replayed."""
    counter = _totp_counter(stored, code, now)
    if counter is None:
        return False
    # Conditional on the value read: of two logins racing with one code, only one wins.
    cursor = conn.execute(
        "UPDATE users SET totp_secret = ? WHERE id = ? AND totp_secret = ?",
        (f"{_split_totp(stored)[0]}|{counter}", user_id, stored),
    )
    return cursor.rowcount == 1


def _count_failure(
    conn: sqlite3.Connection, user_id: int, now: datetime, max_failures: int, lockout: timedelta
) -> None:
    # One statement (the right-hand sides see the old row), so it is atomic even in autocommit.
    conn.execute(
        "UPDATE users SET"
        " locked_until = CASE WHEN failed_logins + 1 >= ? THEN ? ELSE locked_until END,"
        " failed_logins = CASE WHEN failed_logins + 1 >= ? THEN 0 ELSE failed_logins + 1 END"
        " WHERE id = ?",
        (max_failures, (now + lockout).isoformat(), max_failures, user_id),
    )


def _fail(conn: sqlite3.Connection, why: str, username: str) -> NoReturn:
    """Raise :class:`LoginFailed` after making the failure count durable (see :func:`authenticate`)."""
    if conn.in_transaction:
        conn.execute("COMMIT")
        conn.execute("BEGIN")  # deferred: takes no lock, so it cannot fail on a busy database
    raise LoginFailed(why, username)


# --- sessions -----------------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_session(
    conn: sqlite3.Connection,
    user: User,
    *,
    now: datetime,
    ttl: timedelta = timedelta(hours=12),
    single: bool = True,
) -> tuple[str, str]:
    """Start a session after a successful login; return ``(token, csrf_token)``.

    The token goes in the cookie; only its SHA-256 is stored. The CSRF token is stored as is: it
    is echoed in forms and useless without the cookie. With ``single`` (the default), the user's
    other sessions are revoked: one active session per officer, so a forgotten login on another
    machine ends when the officer logs in again. The user's expired rows are tidied away here.
    """
    now = _utc(now)
    current = _get_by_id(conn, user.id)
    if current is None or current.disabled:
        raise AccountError(f"account {user.username!r} is disabled or gone")
    if single:
        revoke_all(conn, user.id)
    stale = [
        token_hash
        for token_hash, expires_at in conn.execute(
            "SELECT token_hash, expires_at FROM sessions WHERE user_id = ?", (user.id,)
        )
        if datetime.fromisoformat(expires_at) <= now
    ]
    conn.executemany("DELETE FROM sessions WHERE token_hash = ?", [(h,) for h in stale])
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, csrf, created_at, last_seen, expires_at)"
        " VALUES (?,?,?,?,?,?)",
        (_token_hash(token), user.id, csrf, now.isoformat(), now.isoformat(), (now + ttl).isoformat()),
    )
    return token, csrf


def session_user(
    conn: sqlite3.Connection,
    token: str,
    *,
    now: datetime,
    idle: timedelta = timedelta(minutes=30),
    touch: bool = True,
) -> tuple[User, str] | None:
    """The session's user and CSRF token, refreshing its idle timer; ``None`` if it is not valid.

    ``touch=False`` checks without refreshing: the queue's background polling must not keep an
    unattended session alive past its idle timeout.

    Invalid means unknown, revoked, past its expiry, idle for longer than ``idle``, or belonging to
    a disabled account. An expired or idle session is revoked on the spot, so it stays dead even
    if a later call passes a longer ``idle``.
    """
    now = _utc(now)
    if not token or len(token) > 256:
        return None
    token_hash = _token_hash(token)
    row = conn.execute(
        "SELECT token_hash, user_id, csrf, last_seen, expires_at, revoked FROM sessions WHERE token_hash = ?",
        (token_hash,),
    ).fetchone()
    # The lookup is by hash, so timing reveals nothing about the token; compare anyway, cheaply.
    if row is None or not hmac.compare_digest(row[0], token_hash) or row[5]:
        return None
    _, user_id, csrf, last_seen, expires_at = row[:5]
    user = _get_by_id(conn, user_id)
    if (
        user is None
        or user.disabled
        or now >= datetime.fromisoformat(expires_at)
        or now - datetime.fromisoformat(last_seen) > idle
    ):
        conn.execute("UPDATE sessions SET revoked = 1 WHERE token_hash = ?", (token_hash,))
        return None
    if touch:
        conn.execute("UPDATE sessions SET last_seen = ? WHERE token_hash = ?", (now.isoformat(), token_hash))
    return user, str(csrf)


def csrf_ok(expected: str, submitted: str | None) -> bool:
    """Compare a submitted CSRF token with the session's in constant time."""
    return submitted is not None and hmac.compare_digest(
        expected.encode(), submitted.encode("utf-8", "surrogatepass")
    )


def revoke_session(conn: sqlite3.Connection, token: str) -> bool:
    """End one session (logout); whether a live session was ended."""
    cursor = conn.execute(
        "UPDATE sessions SET revoked = 1 WHERE token_hash = ? AND revoked = 0", (_token_hash(token),)
    )
    return cursor.rowcount > 0


def revoke_all(conn: sqlite3.Connection, user_id: int) -> int:
    """End every session of a user; how many were live."""
    cursor = conn.execute("UPDATE sessions SET revoked = 1 WHERE user_id = ? AND revoked = 0", (user_id,))
    return cursor.rowcount
