"""A wheel built from the repository works in a fresh virtualenv, from any directory."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel (not editable) and install it into a brand-new virtualenv."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = dist.glob("presencebot-*.whl")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    subprocess.run(
        [str(env_dir / "bin" / "pip"), "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return env_dir


def test_wheel_runs_a_transcript_from_any_directory(installed: Path, tmp_path: Path) -> None:
    bot = installed / "bin" / "presencebot"
    transcript = tmp_path / "transcript.txt"
    transcript.write_text("lily: hiii im 12\nmark: lily where do u live?\n", encoding="utf-8")
    with transcript.open() as stdin:
        result = subprocess.run(
            [str(bot), "run"], stdin=stdin, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0, result.stderr
    assert "POLICE PRESENCE" in result.stdout
    assert "ALERT" in result.stdout
    listed = subprocess.run(
        [str(bot), "alerts", "list", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert [a["target"]["nick"] for a in json.loads(listed.stdout)] == ["lily"]


def test_wheel_installs_adapters_and_logos_inside_the_namespace(installed: Path, tmp_path: Path) -> None:
    python = installed / "bin" / "python"
    probe = (
        "import importlib.metadata as m, importlib.util as u, json;"
        "from presencebot import badge;"
        "print(json.dumps({"
        "'adapters': sorted(e.name for e in m.entry_points(group='presencebot.adapters')),"
        "'rules': sorted(e.name for e in m.entry_points(group='presencebot.rules')),"
        "'terminal': m.entry_points(group='presencebot.adapters', name='terminal')['terminal'].load().__module__,"
        "'png96': len(badge.png(96)), 'svg': len(badge.svg()),"
        "'bare_adapters': u.find_spec('adapters') is not None,"
        "'bare_logos': u.find_spec('logos') is not None}))"
    )
    out = subprocess.run(
        [str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    )
    facts = json.loads(out.stdout)
    assert "terminal" in facts["adapters"]
    assert "minor_whereabouts" in facts["rules"]
    assert facts["terminal"] == "presencebot.adapters.terminal"
    assert facts["png96"] == (REPO / "logos" / "badge-96.png").stat().st_size
    assert facts["svg"] == (REPO / "logos" / "badge.svg").stat().st_size
    assert facts["bare_adapters"] is False
    assert facts["bare_logos"] is False
    check = subprocess.run(
        [str(installed / "bin" / "presencebot"), "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
