"""The console's command line: accounts, audit verification, evidence bundles, purge — each
change audited."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from presencebot import cli
from presencebot.alerts import Alert
from presencebot.events import Author
from presencebot.ids import AccountId
from tests.support import sample_alert


def make_alert(alert_id: str = "a00000000001") -> Alert:
    return sample_alert(
        alert_id,
        at=datetime(2026, 1, 14, 12, 0, tzinfo=UTC),
        target=Author("lily", AccountId("lily")),
        requester=Author("mark", AccountId("mark")),
        category="address",
        explanation="lily stated age 12; mark asked for her address",
        texts=("im 12", "whats ur address"),
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "bot.db"}"\n\n[console]\npurge_dismissed_after_days = 30\n'
    )
    return path


async def seed(tmp_path: Path) -> None:
    from presencebot.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "bot.db")
    await store.open()
    try:
        await store.add(make_alert(), [])
    finally:
        await store.close()


def run(config: Path, *argv: str) -> int:
    return cli.main([*argv, "--config", str(config)] if argv[-1] != "--no-config" else list(argv[:-1]))


def test_users_are_added_listed_disabled_and_every_change_is_audited(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "correct horse battery staple")
    assert run(config, "users", "add", "smith", "--public-id", "PC 4521", "--force", "uk") == 0
    assert (
        run(config, "users", "add", "audrey", "--public-id", "AUD 1", "--force", "uk", "--role", "auditor")
        == 0
    )
    assert run(config, "users", "list") == 0
    out = capsys.readouterr().out
    assert "smith" in out and "PC 4521" in out and "auditor" in out
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "short")
    assert run(config, "users", "add", "weak", "--public-id", "PC 1", "--force", "uk") == 2
    assert "12" in capsys.readouterr().err  # the password policy says why
    assert run(config, "users", "disable", "smith") == 0
    assert run(config, "users", "enable", "smith") == 0
    assert run(config, "audit", "verify") == 0
    db = sqlite3.connect(config.parent / "bot.db")
    actions = [r[0] for r in db.execute("SELECT action FROM audit_log ORDER BY seq")]
    db.close()
    assert actions == ["user_add", "user_add", "user_disable", "user_enable"]


async def test_audit_verify_fails_on_an_edited_entry(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    await seed(tmp_path)
    bundle = tmp_path / "bundle.json"
    assert (
        await asyncio.to_thread(run, config, "evidence", "export", "a00000000001", "--out", str(bundle)) == 0
    )
    assert await asyncio.to_thread(run, config, "audit", "verify") == 0
    db = sqlite3.connect(tmp_path / "bot.db")
    db.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 1")
    db.commit()
    db.close()
    assert await asyncio.to_thread(run, config, "audit", "verify") == 1
    assert "TAMPERED" in capsys.readouterr().err


async def test_evidence_bundles_verify_and_one_changed_byte_is_caught(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    await seed(tmp_path)
    bundle = tmp_path / "bundle.json"
    assert (
        await asyncio.to_thread(run, config, "evidence", "export", "a00000000001", "--out", str(bundle)) == 0
    )
    assert cli.main(["evidence", "verify", str(bundle)]) == 0
    data = json.loads(bundle.read_text())
    data["evidence"][1]["text"] = "whats ur adress"
    bundle.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    assert cli.main(["evidence", "verify", str(bundle)]) == 1
    assert "TAMPERED" in capsys.readouterr().err


async def test_purge_blanks_only_dismissed_alerts_past_the_period(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    await seed(tmp_path)
    db = sqlite3.connect(tmp_path / "bot.db")
    old = (datetime.now(UTC) - timedelta(days=31)).isoformat()
    db.execute("UPDATE alerts SET disposition = 'false_positive', disposed_at = ?", (old,))
    db.commit()
    db.close()
    assert await asyncio.to_thread(run, config, "purge", "--dry-run") == 0
    assert "a00000000001" in capsys.readouterr().out
    assert await asyncio.to_thread(run, config, "purge") == 0
    db = sqlite3.connect(tmp_path / "bot.db")
    texts = [r[0] for r in db.execute("SELECT text FROM evidence")]
    hashes = [r[0] for r in db.execute("SELECT sha256 FROM evidence")]
    db.close()
    assert set(texts) == {""} and all(hashes)
