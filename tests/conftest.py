"""Shared fixtures (helpers live in tests/support.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import ClassVar

import pytest

from presencebot.adapter import Adapter
from presencebot.config import Config
from presencebot.rule import Rule
from presencebot.runtime import Runtime
from presencebot.store.sqlite import SQLiteStore
from tests.support import RuntimeHarness, ScriptedAdapter


@pytest.fixture
def scripted() -> type[ScriptedAdapter]:
    """A fresh ScriptedAdapter subclass per test, so class-level records never leak."""

    class Adapter_(ScriptedAdapter):
        instances: ClassVar[list[ScriptedAdapter]] = []

    return Adapter_


@pytest.fixture
async def start_runtime(
    tmp_path: Path,
) -> AsyncIterator[Callable[..., RuntimeHarness]]:
    """``start_runtime(config, {"net": AdapterClass}, rules)`` runs a Runtime in the background."""
    harnesses: list[RuntimeHarness] = []

    def start(
        config: Config,
        adapters: dict[str, type[Adapter]],
        rules: list[Rule],
        store: SQLiteStore | None = None,
    ) -> RuntimeHarness:
        store = store or SQLiteStore(tmp_path / "alerts.db")
        resolved = {name: (cls, cls.Settings()) for name, cls in adapters.items()}
        runtime = Runtime(config, store, adapters=resolved, rules=rules)
        harness = RuntimeHarness(runtime, asyncio.create_task(runtime.run()), store)
        harnesses.append(harness)
        return harness

    yield start
    for harness in harnesses:
        if not harness.task.done():
            harness.runtime.stop()
            await asyncio.wait_for(harness.task, 5)
