"""Console accounts: users, password policy and hashing, lockout, TOTP, sessions, role helpers."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from argon2 import PasswordHasher, Type

from presencebot import accounts
from presencebot.accounts import (
    InvalidAccount,
    InvalidUsername,
    LoginFailed,
    Role,
    User,
    UserExists,
    UserNotFound,
    WeakPassword,
    add_user,
    authenticate,
    create_session,
    csrf_ok,
    disable_user,
    enable_user,
    get_user,
    list_users,
    reset_password,
    reset_totp,
    revoke_all,
    revoke_session,
    session_user,
)
from presencebot.errors import PresencebotError
from presencebot.store.sqlite import SQLiteStore

T0 = datetime(2024, 5, 1, 14, 0, 7, tzinfo=UTC)  # 7 s into a 30-s TOTP step
PASSWORD = "correct horse battery"
REAL_HASHER = accounts.HASHER
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests hash dozens of passwords: use tiny argon2id parameters unless a test restores the real."""
    monkeypatch.setattr(accounts, "HASHER", CHEAP_HASHER)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "alerts.db"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(db)
    await s.open()
    yield s
    await s.close()


async def add(
    store: SQLiteStore,
    username: str = "alice",
    *,
    role: Role | str = Role.OFFICER,
    force: str = "met",
    totp: bool = False,
    password: str = PASSWORD,
) -> tuple[User, str | None]:
    return await store.transaction(
        lambda c: add_user(
            c,
            username=username,
            password=password,
            public_id="PC 4521",
            force=force,
            role=role,
            totp=totp,
            now=T0,
        )
    )


async def login(
    store: SQLiteStore,
    password: str = PASSWORD,
    *,
    at: datetime = T0,
    code: str | None = None,
    username: str = "alice",
) -> User:
    return await store.transaction(lambda c: authenticate(c, username, password, code, now=at))


async def fails(store: SQLiteStore, password: str = PASSWORD, **kw: object) -> str:
    """Attempt a login that must fail; return its internal ``why``, checking the public message."""
    with pytest.raises(LoginFailed) as info:
        await login(store, password, **kw)  # type: ignore[arg-type]
    assert str(info.value) == info.value.reason == "wrong username, password or code"
    return info.value.why


async def visit(
    store: SQLiteStore, token: str, at: datetime = T0, **kw: timedelta
) -> tuple[User, str] | None:
    """One console request with the session cookie ``token`` at ``at``."""
    return await store.transaction(lambda c: session_user(c, token, now=at, **kw))


def column(db: Path, sql: str) -> object:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchone()[0]


# --- users ---------------------------------------------------------------------------------------


async def test_add_get_list_disable_enable(store: SQLiteStore) -> None:
    alice, uri = await add(store, "Alice")  # usernames are case-insensitive, stored lower-case
    assert uri is None
    assert alice == User(alice.id, "alice", "PC 4521", "met", Role.OFFICER, False, False, None)
    await add(store, "bob.smith", role="supervisor", force="kent")
    assert [u.username for u in await store.read(list_users)] == ["alice", "bob.smith"]
    assert await store.read(lambda c: get_user(c, "ALICE")) == alice
    assert await store.read(lambda c: get_user(c, "nobody")) is None

    disabled = await store.transaction(lambda c: disable_user(c, "alice"))
    assert disabled.disabled and not disabled.can_act and not disabled.may_see("met")
    assert (await store.transaction(lambda c: enable_user(c, "alice"))).disabled is False
    with pytest.raises(UserNotFound, match="no account named 'nobody'"):
        await store.transaction(lambda c: disable_user(c, "nobody"))


async def test_duplicate_username_is_refused(store: SQLiteStore) -> None:
    await add(store, "alice")
    with pytest.raises(UserExists, match="already exists"):
        await add(store, "ALICE")


@pytest.mark.parametrize(
    "username", ["a", "-alice", ".alice", "alice smith", "a" * 33, "élise", "al/ice", ""]
)
async def test_bad_usernames_are_rejected_with_the_rule(store: SQLiteStore, username: str) -> None:
    with pytest.raises(InvalidUsername, match=r"invalid username .*2 to 32 characters, lower-case letters"):
        await add(store, username)
    assert await store.read(list_users) == []


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short pass", "at least 12 characters long (it has 10)"),
        ("aaaaaaaaaaaaaaaa", "too few different characters"),
        ("alice-alice-alice", "mostly the username"),
        ("Alice2024!!", "at least 12 characters"),
        ("password1234", "common password"),
        ("123456789012", "common password"),
        ("qwertyuiopas", "common password"),
        ("pc4521pc4521!", "the public id"),
        ("x" * 1025, "at most 1024 characters"),
    ],
)
async def test_weak_passwords_are_rejected_with_clear_messages(
    store: SQLiteStore, password: str, problem: str
) -> None:
    with pytest.raises(WeakPassword, match="password rejected: ") as info:
        await add(store, password=password)
    assert any(problem in p for p in info.value.problems), info.value.problems
    assert isinstance(info.value, PresencebotError)


async def test_other_fields_are_checked(store: SQLiteStore) -> None:
    with pytest.raises(InvalidAccount, match="invalid role 'constable': one of officer, supervisor"):
        await add(store, role="constable")
    with pytest.raises(InvalidAccount, match="invalid force '  ': 1 to 64 printable"):
        await add(store, force="  ")
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.transaction(lambda c: authenticate(c, "alice", PASSWORD, None, now=datetime(2024, 5, 1)))


async def test_passwords_are_hashed_with_argon2id_and_the_pinned_parameters(
    store: SQLiteStore, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accounts, "HASHER", REAL_HASHER)
    await add(store)
    stored = str(column(db, "SELECT password_hash FROM users"))
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in stored
    assert (await login(store)).username == "alice"


async def test_an_old_hash_is_upgraded_on_the_next_successful_login(
    store: SQLiteStore, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add(store)  # with the cheap parameters
    assert str(column(db, "SELECT password_hash FROM users")).startswith("$argon2id$v=19$m=8,t=1,p=1$")
    monkeypatch.setattr(accounts, "HASHER", REAL_HASHER)
    assert await fails(store, "wrong password!") == "bad_password"
    assert str(column(db, "SELECT password_hash FROM users")).startswith("$argon2id$v=19$m=8,")
    await login(store)
    assert str(column(db, "SELECT password_hash FROM users")).startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    await login(store)  # and the new hash verifies


# --- login and lockout ---------------------------------------------------------------------------


async def test_login_and_its_generic_failures(store: SQLiteStore) -> None:
    alice, _ = await add(store)
    assert await login(store) == alice
    assert await login(store, username=" Alice ") == alice
    assert await fails(store, "wrong password!") == "bad_password"
    assert await fails(store, username="mallory") == "unknown_user"
    await store.transaction(lambda c: disable_user(c, "alice"))
    assert await fails(store) == "disabled"


async def test_lockout_after_five_failures_for_ten_minutes(store: SQLiteStore, db: Path) -> None:
    await add(store)
    for i in range(4):
        assert await fails(store, "wrong password!", at=T0 + timedelta(seconds=i)) == "bad_password"
    # Failures are counted although the exception rolled the caller's transaction back.
    assert column(db, "SELECT failed_logins FROM users") == 4
    await login(store, at=T0 + timedelta(seconds=5))  # a success resets the count
    assert column(db, "SELECT failed_logins FROM users") == 0

    for i in range(5):
        assert (
            await fails(store, "wrong password!", at=T0 + timedelta(minutes=1, seconds=i)) == "bad_password"
        )
    locked_at = T0 + timedelta(minutes=1, seconds=4)
    user = await store.read(lambda c: get_user(c, "alice"))
    assert user is not None and user.locked_until == locked_at + timedelta(minutes=10)
    assert user.locked(locked_at) and not user.locked(locked_at + timedelta(minutes=10))

    # Locked: even the right password fails, and attempts while locked do not extend the lock.
    assert await fails(store, at=locked_at + timedelta(seconds=1)) == "locked"
    assert await fails(store, "wrong password!", at=locked_at + timedelta(minutes=9)) == "locked"
    assert await fails(store, at=locked_at + timedelta(minutes=9, seconds=59)) == "locked"
    # Expired: the right password works and clears the lock.
    assert (await login(store, at=locked_at + timedelta(minutes=10))).locked_until is None


async def test_failures_are_counted_outside_a_transaction_too(store: SQLiteStore, db: Path) -> None:
    await add(store)
    with pytest.raises(LoginFailed):
        await store.read(lambda c: authenticate(c, "alice", "wrong password!", None, now=T0))
    assert column(db, "SELECT failed_logins FROM users") == 1


async def test_reset_password_clears_the_lockout_and_ends_sessions(store: SQLiteStore) -> None:
    alice, _ = await add(store)
    token, _ = await store.transaction(lambda c: create_session(c, alice, now=T0))
    for _ in range(5):
        await fails(store, "wrong password!")
    assert await fails(store) == "locked"

    with pytest.raises(WeakPassword, match="at least 12 characters"):
        await store.transaction(lambda c: reset_password(c, "alice", "short", now=T0))
    new = "another long passphrase"
    await store.transaction(lambda c: reset_password(c, "alice", new, now=T0))
    assert await store.read(lambda c: session_user(c, token, now=T0)) is None
    assert await fails(store) == "bad_password"  # the old password
    assert (await login(store, new)).locked_until is None


# --- TOTP ----------------------------------------------------------------------------------------


def totp_of(uri: str | None) -> pyotp.TOTP:
    assert uri is not None
    return pyotp.TOTP(pyotp.parse_uri(uri).secret)


async def test_totp_is_required_once_enabled_and_a_code_cannot_be_replayed(store: SQLiteStore) -> None:
    alice, uri = await add(store, totp=True)
    assert alice.has_totp
    assert uri is not None and uri.startswith("otpauth://totp/presencebot:alice?secret=")
    assert "issuer=presencebot" in uri
    totp = totp_of(uri)
    code = totp.at(T0)

    assert await fails(store) == "bad_totp"  # missing
    assert await fails(store, code="000000" if code != "000000" else "111111") == "bad_totp"
    assert await fails(store, code="abcdef") == "bad_totp"
    assert await fails(store, "wrong password!", code=code) == "bad_password"  # does not use the code
    assert await login(store, code=f"{code[:3]} {code[3:]}") == alice
    assert await fails(store, code=code) == "bad_totp"  # replay, same step
    assert await fails(store, code=code, at=T0 + timedelta(seconds=30)) == "bad_totp"  # still in window
    assert await fails(store, code=totp.at(T0 - timedelta(seconds=30))) == "bad_totp"  # older than used
    assert await login(store, code=totp.at(T0 + timedelta(seconds=30)), at=T0 + timedelta(seconds=30))


async def test_totp_window_is_one_step_either_side(store: SQLiteStore) -> None:
    _, uri = await add(store, totp=True)
    totp = totp_of(uri)
    assert await fails(store, code=totp.at(T0 - timedelta(seconds=60))) == "bad_totp"
    assert await fails(store, code=totp.at(T0 + timedelta(seconds=60))) == "bad_totp"
    await login(store, code=totp.at(T0 - timedelta(seconds=30)))  # a slow phone or a slow typist
    await login(store, code=totp.at(T0 + timedelta(seconds=30)))  # a fast clock


async def test_bad_totp_codes_count_towards_the_lockout(store: SQLiteStore) -> None:
    _, uri = await add(store, totp=True)
    for _ in range(5):
        assert await fails(store, code="not a code") == "bad_totp"
    assert await fails(store, code=totp_of(uri).at(T0)) == "locked"


async def test_reset_totp_replaces_or_removes_the_secret(store: SQLiteStore) -> None:
    _, old_uri = await add(store, totp=True)
    new_uri = await store.transaction(lambda c: reset_totp(c, "alice"))
    assert await fails(store, code=totp_of(old_uri).at(T0)) == "bad_totp"
    await login(store, code=totp_of(new_uri).at(T0))
    assert await store.transaction(lambda c: reset_totp(c, "alice", enable=False)) is None
    assert (await login(store)).has_totp is False


# --- sessions ------------------------------------------------------------------------------------


async def test_session_round_trip_and_the_token_is_stored_hashed(store: SQLiteStore, db: Path) -> None:
    alice, _ = await add(store)
    token, csrf = await store.transaction(lambda c: create_session(c, alice, now=T0))
    assert len(token) >= 43 and len(csrf) >= 43 and token != csrf
    assert await store.transaction(lambda c: session_user(c, token, now=T0)) == (alice, csrf)
    assert csrf_ok(csrf, csrf) and not csrf_ok(csrf, csrf[:-1] + "x") and not csrf_ok(csrf, None)
    assert column(db, "SELECT token_hash FROM sessions") == hashlib.sha256(token.encode()).hexdigest()
    on_disk = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
    assert token.encode() not in on_disk
    assert await store.read(lambda c: session_user(c, "made-up", now=T0)) is None
    assert await store.read(lambda c: session_user(c, "", now=T0)) is None


async def test_one_active_session_per_user_by_default(store: SQLiteStore) -> None:
    alice, _ = await add(store)
    first, _ = await store.transaction(lambda c: create_session(c, alice, now=T0))
    second, _ = await store.transaction(lambda c: create_session(c, alice, now=T0))
    assert await store.read(lambda c: session_user(c, first, now=T0)) is None
    assert await store.read(lambda c: session_user(c, second, now=T0)) is not None
    third, _ = await store.transaction(lambda c: create_session(c, alice, now=T0, single=False))
    assert await store.read(lambda c: session_user(c, second, now=T0)) is not None
    assert await store.read(lambda c: session_user(c, third, now=T0)) is not None


async def test_idle_timeout_is_refreshed_by_use(store: SQLiteStore) -> None:
    alice, _ = await add(store)
    token, _ = await store.transaction(lambda c: create_session(c, alice, now=T0))
    at = T0
    for _ in range(3):
        at += timedelta(minutes=29)
        assert await visit(store, token, at) is not None
    at += timedelta(minutes=30, seconds=1)
    assert await visit(store, token, at) is None
    # Dead for good, even for a caller with a longer idle limit.
    assert await store.read(lambda c: session_user(c, token, now=at, idle=timedelta(hours=1))) is None


async def test_sessions_expire_even_when_in_use(store: SQLiteStore) -> None:
    alice, _ = await add(store)
    token, _ = await store.transaction(lambda c: create_session(c, alice, now=T0, ttl=timedelta(hours=1)))
    for minutes in (20, 40, 59):
        assert await visit(store, token, T0 + timedelta(minutes=minutes)) is not None
    assert await visit(store, token, T0 + timedelta(hours=1)) is None


async def test_revocation(store: SQLiteStore) -> None:
    alice, _ = await add(store)
    one, _ = await store.transaction(lambda c: create_session(c, alice, now=T0, single=False))
    two, _ = await store.transaction(lambda c: create_session(c, alice, now=T0, single=False))
    three, _ = await store.transaction(lambda c: create_session(c, alice, now=T0, single=False))
    assert await store.transaction(lambda c: revoke_session(c, one)) is True
    assert await store.transaction(lambda c: revoke_session(c, one)) is False
    assert await store.read(lambda c: session_user(c, one, now=T0)) is None
    assert await store.transaction(lambda c: revoke_all(c, alice.id)) == 2
    for token in (two, three):
        assert await visit(store, token) is None


async def test_a_disabled_users_session_is_rejected(store: SQLiteStore, db: Path) -> None:
    alice, _ = await add(store)
    bob, _ = await add(store, "bob")
    token, _ = await store.transaction(lambda c: create_session(c, alice, now=T0))
    await store.transaction(lambda c: disable_user(c, "alice"))  # revokes it
    assert await store.read(lambda c: session_user(c, token, now=T0)) is None
    with pytest.raises(accounts.AccountError, match="disabled"):
        await store.transaction(lambda c: create_session(c, alice, now=T0))

    # Even if the account were disabled without revoking (another tool, a direct edit).
    bob_token, _ = await store.transaction(lambda c: create_session(c, bob, now=T0))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE users SET disabled = 1 WHERE username = 'bob'")
    assert await store.read(lambda c: session_user(c, bob_token, now=T0)) is None


# --- roles ---------------------------------------------------------------------------------------


def user(role: Role, force: str = "met") -> User:
    return User(1, "u", "PC 1", force, role, False, False, None)


@pytest.mark.parametrize(
    ("role", "own", "other", "no_force", "acts", "all_forces", "manages"),
    [
        (Role.OFFICER, True, False, True, True, False, False),
        (Role.SUPERVISOR, True, True, True, True, True, False),
        (Role.AUDITOR, True, True, True, False, True, False),
        (Role.ADMIN, True, True, True, True, True, True),
    ],
)
def test_role_matrix(
    role: Role, own: bool, other: bool, no_force: bool, acts: bool, all_forces: bool, manages: bool
) -> None:
    u = user(role)
    assert (u.may_see("met"), u.may_see("kent"), u.may_see(None)) == (own, other, no_force)
    assert (u.can_act, u.sees_all_forces, u.may_manage_users) == (acts, all_forces, manages)


def test_force_names_compare_exactly() -> None:
    assert not user(Role.OFFICER, "met").may_see("Met")
