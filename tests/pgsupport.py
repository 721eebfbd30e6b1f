"""PostgreSQL for tests: a pool on a fresh, throw-away schema per test.

Each test gets its own schema (``t_<random>``) on the shared server, named in the pool's
``search_path``, so tests never see each other's tables and may run against a server others use.
Import the fixture into a test module: ``from tests.pgsupport import pg_pool``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support import require

PG_URL = os.environ.get("PRESENCEBOT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def connect_or_skip() -> asyncpg.Connection:
    """One admin connection, or skip (fail in CI) when no server answers."""
    try:
        return await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        require(False, f"PostgreSQL not reachable at {PG_URL}: {exc!r}")
        raise  # unreachable: require() skips or fails


@pytest.fixture
async def pg_pool() -> AsyncIterator[asyncpg.Pool]:
    """A pool whose ``search_path`` is a schema created for this test and dropped after it."""
    admin = await connect_or_skip()
    schema = f"t_{secrets.token_hex(6)}"
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        pool = await asyncpg.create_pool(
            PG_URL, min_size=1, max_size=12, server_settings={"search_path": schema}
        )
        try:
            yield pool
        finally:
            try:
                await asyncio.wait_for(pool.close(), 5)
            except TimeoutError:
                pool.terminate()
    finally:
        with contextlib.suppress(asyncpg.PostgresError, OSError):
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()
