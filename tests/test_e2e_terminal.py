"""End to end: the installed ``presencebot`` console script on a transcript, as a person runs it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "presencebot"

# Ordinary chat long before the request (outside the 10-message evidence window), the age
# statement, ten lines of context, the request, then more ordinary chat after it.
BEFORE = [f"kian: early chat token-before-{i}" for i in range(15)]
CONTEXT = [f"zed: context chat token-context-{i}" for i in range(10)]
AFTER = [f"lily: later chat token-after-{i}" for i in range(5)]
TRANSCRIPT = "\n".join([*BEFORE, "lily: hiii im 12", *CONTEXT, "mark: lily where do u live?", *AFTER]) + "\n"
UNFLAGGED = [line.split(": ", 1)[1] for line in BEFORE + AFTER]


def run(
    args: list[str], cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args],
        input=stdin,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(
        f"""
[agency]
name = "Test Constabulary"
[store]
path = "{tmp_path / "alerts.db"}"
[[networks]]
name = "local"
adapter = "terminal"
[[networks.rooms]]
id = "#hangout"
{extra}
""",
        encoding="utf-8",
    )
    return path


def test_transcript_shows_badge_flags_and_stores_one_alert(tmp_path: Path) -> None:
    result = run(["run"], cwd=tmp_path, stdin="lily: hiii im 12\nmark: lily where do u live?\n")
    assert result.returncode == 0, result.stderr
    assert "POLICE PRESENCE" in result.stdout
    assert "Demo Police Service" in result.stdout
    assert "!police" in result.stdout
    assert "ALERT" in result.stdout and "lily" in result.stdout
    listed = run(["alerts", "list", "--json"], cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    alerts = json.loads(listed.stdout)
    assert len(alerts) == 1
    assert alerts[0]["target"]["nick"] == "lily"
    assert alerts[0]["requester"]["nick"] == "mark"
    assert alerts[0]["category"] == "location"
    assert (tmp_path / "presencebot.db").exists()  # the default store lives in the working directory


def test_no_unflagged_text_reaches_disk_or_logs(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = run(["run", "--config", str(config)], cwd=tmp_path, stdin=TRANSCRIPT)
    assert result.returncode == 0, result.stderr
    (alert,) = json.loads(run(["alerts", "list", "--json", "--config", str(config)], cwd=tmp_path).stdout)
    texts = [e["text"] for e in alert["evidence"]]
    # The evidence: the age statement the flag rests on, ten lines of context, the request.
    assert texts == ["hiii im 12", *(c.split(": ", 1)[1] for c in CONTEXT), "lily where do u live?"]
    # Every other line — chat before the window and after the flag — is nowhere on disk.
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("alerts.db*"))
    assert raw
    for text in UNFLAGGED:
        assert text.encode() not in raw, text
    # Nor in the logs, which never carry chat text at all.
    for line in TRANSCRIPT.splitlines():
        assert line.split(": ", 1)[1] not in result.stderr


def test_context_window_zero_stores_only_flagged_and_named_messages(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("[store]", "[evidence]\ncontext_messages = 0\n[store]"))
    result = run(["run", "--config", str(config)], cwd=tmp_path, stdin=TRANSCRIPT)
    assert result.returncode == 0, result.stderr
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("alerts.db*"))
    assert b"lily where do u live?" in raw
    assert b"hiii im 12" in raw  # the age statement the flag rests on
    for text in UNFLAGGED:
        assert text.encode() not in raw, text


def test_logs_are_json_with_bound_context_when_not_a_tty(tmp_path: Path) -> None:
    result = run(["run", "--config", str(write_config(tmp_path))], cwd=tmp_path, stdin=TRANSCRIPT)
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    raised = [entry for entry in lines if entry["event"] == "alert.raised"]
    assert len(raised) == 1
    assert raised[0]["network"] == "local"
    assert raised[0]["room"] == "#hangout"
    assert raised[0]["event_id"].startswith("e")
    assert raised[0]["level"] == "warning"


def test_private_report_and_commands(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    script = "lily: !police\nlily -> bot: !report someone keeps asking which school i go to\nlily: !help\n"
    result = run(["run", "--config", str(config)], cwd=tmp_path, stdin=script)
    assert result.returncode == 0, result.stderr
    assert "<presencebot> I am a police presence bot run openly by Test Constabulary" in result.stdout
    assert "presencebot -> lily: Thank you, your report was passed" in result.stdout
    assert "Childline — 0800 1111" in result.stdout
    (alert,) = json.loads(run(["alerts", "list", "--json", "--config", str(config)], cwd=tmp_path).stdout)
    assert alert["category"] == "report"
    assert alert["id"] in result.stdout


def test_french_room(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra='language = "fr"\naudience = "minors"')
    result = run(
        ["run", "--config", str(config)], cwd=tmp_path, stdin="zoe: salut\nnathan: zoe t'habites où\n"
    )
    assert result.returncode == 0, result.stderr
    assert "PRÉSENCE POLICIÈRE" in result.stdout
    (alert,) = json.loads(run(["alerts", "list", "--json", "--config", str(config)], cwd=tmp_path).stdout)
    assert alert["target"]["nick"] == "zoe"


def test_ack_from_the_cli(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    run(["run", "--config", str(config)], cwd=tmp_path, stdin=TRANSCRIPT)
    (alert,) = json.loads(run(["alerts", "list", "--json", "--config", str(config)], cwd=tmp_path).stdout)
    acked = run(
        ["alerts", "ack", alert["id"], "--by", "pc-1234", "--json", "--config", str(config)], cwd=tmp_path
    )
    assert acked.returncode == 0, acked.stderr
    assert json.loads(acked.stdout)["acknowledged_by"] == "pc-1234"
    shown = run(["alerts", "show", alert["id"], "--config", str(config)], cwd=tmp_path)
    assert "acknowledged by pc-1234" in shown.stdout
    assert ">>" in shown.stdout  # the flagged message is marked
    missing = run(["alerts", "show", "000000000000", "--config", str(config)], cwd=tmp_path)
    assert missing.returncode == 2
    assert "no alert" in missing.stderr
    open_only = json.loads(
        run(["alerts", "list", "--state", "open", "--json", "--config", str(config)], cwd=tmp_path).stdout
    )
    assert open_only == []


def test_bad_input_lines_are_reported_and_do_not_stop_the_room(tmp_path: Path) -> None:
    script = "this line has no nick\n\xff\xfe garbage\nlily: im 12\nmark: lily where do u live\n"
    result = subprocess.run(
        [str(BIN), "run", "--config", str(write_config(tmp_path))],
        input=script.encode("latin-1"),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert b"ignored: expected `nick: text`" in result.stderr
    assert b"ALERT" in result.stdout


def test_sigterm_shuts_down_cleanly_and_keeps_alerts(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    proc = subprocess.Popen(
        [str(BIN), "run", "--config", str(config)],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write("lily: im 12\nmark: lily where do u live\n")
    proc.stdin.flush()
    db = tmp_path / "alerts.db"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if db.exists():
            with sqlite3.connect(db) as conn:
                try:
                    if conn.execute("SELECT count(*) FROM alerts").fetchone()[0] == 1:
                        break
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the alert was never stored")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0  # stdin is still open: only the signal ends it
    logs = [json.loads(line)["event"] for line in proc.stderr.read().splitlines() if line.startswith("{")]  # type: ignore[union-attr]
    assert "runtime.stopped" in logs
    proc.stdin.close()
