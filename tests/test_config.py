"""Configuration: the shipped file, error reporting with lines, `presencebot check`, environment
overrides and secret hygiene."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from presencebot import checks, cli, config, plugins
from presencebot.adapter import Adapter
from presencebot.errors import ConfigError

ROOT = Path(__file__).parent.parent
DEFAULT_FILE = ROOT / "config" / "presencebot.toml"
PROBLEM = re.compile(r"^(?P<where>.+?):(?P<line>\d+): (?P<path>\S+): (?P<message>.+)$")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No stray PRESENCEBOT_* variable may change a result, and `cli.main` reconfigures structlog
    onto the captured stderr, which must not outlive the test."""
    for var in list(os.environ):
        if var.startswith(config.ENV_PREFIX):
            monkeypatch.delenv(var)
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def problems_of(text: str, *, source: str = "bad.toml", environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.parse(text, source=source, environ=environ or {})
    return caught.value.problems


def split(problem: str) -> tuple[str, int, str, str]:
    """``FILE:LINE: dotted.path: message`` -> its four parts (fails the test on any other form)."""
    match = PROBLEM.match(problem)
    assert match, f"not FILE:LINE: path: message: {problem!r}"
    return match["where"], int(match["line"]), match["path"], match["message"]


def write(tmp_path: Path, text: str, name: str = "presencebot.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped file --------------------------------------------------------------------------


def test_shipped_file_is_exactly_the_builtin_defaults() -> None:
    parsed = config.parse(DEFAULT_FILE.read_text(encoding="utf-8"), environ={})
    assert parsed == config.Config()
    assert config.load(None, environ={})[0] == parsed


def test_shipped_file_passes_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "--config", str(DEFAULT_FILE)]) == 0
    out = capsys.readouterr()
    assert "OK (1 network(s), 1 room(s))" in out.out
    assert out.err == ""


# --- every problem at once, each with its line -------------------------------------------------

MISTAKES = """\
[agency]
name = "Test Police"
regoin = "us"

[memory]
max_messages = -3

[[networks]]
name = "one"
adapter = "terminal"

[[networks.rooms]]
id = "#a"

[[networks.rooms]]
id = "#b"
rejoin_on_kick = "sometimes"

[[networks]]
name = "two"
adapter = "terminal"

[[networks.rooms]]
id = "#c"

[[networks.rooms]]
id = "#d"
audience = "kids"
"""


def test_all_mistakes_reported_with_file_line_and_path() -> None:
    found = {split(p)[:3]: split(p)[3] for p in problems_of(MISTAKES)}
    assert set(found) == {
        ("bad.toml", 3, "agency.regoin"),
        ("bad.toml", 6, "memory.max_messages"),
        ("bad.toml", 17, "networks[0].rooms[1].rejoin_on_kick"),
        ("bad.toml", 28, "networks[1].rooms[1].audience"),
    }
    assert "unknown setting" in found["bad.toml", 3, "agency.regoin"]
    assert "greater than or equal to 1" in found["bad.toml", 6, "memory.max_messages"]
    assert "(got -3)" in found["bad.toml", 6, "memory.max_messages"]
    assert "boolean" in found["bad.toml", 17, "networks[0].rooms[1].rejoin_on_kick"]
    audience = found["bad.toml", 28, "networks[1].rooms[1].audience"]
    assert "'general' or 'minors'" in audience
    assert "'kids'" in audience


def test_missing_required_setting_points_at_its_table() -> None:
    text = '[agency]\nname = "x"\n\n[[networks]]\nname = "a"\n\n[[networks]]\nadapter = "terminal"\n'
    found = [split(p) for p in problems_of(text)]
    assert found == [
        ("bad.toml", 4, "networks[0].adapter", "required setting is missing"),
        ("bad.toml", 7, "networks[1].name", "required setting is missing"),
    ]


def test_error_in_an_inline_table_points_at_its_line() -> None:
    text = '[[networks]]\nname = "a"\nadapter = "terminal"\nrooms = [{ id = "#a" }, { id = "" }]\n'
    [problem] = problems_of(text)
    assert split(problem)[:3] == ("bad.toml", 4, "networks[0].rooms[1].id")


def test_lines_survive_multiline_strings_before_the_mistake() -> None:
    text = '[agency]\nname = """Demo\n[memory]\nmax_messages = 5\n"""\n\n[memory]\nmax_messages = 0\n'
    [problem] = problems_of(text)
    assert split(problem)[:3] == ("bad.toml", 8, "memory.max_messages")


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_check_bad_config_prints_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, MISTAKES)
    assert cli.main(["check", "--config", str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    err = out.err.splitlines()
    assert err[-1] == "4 problems found"
    assert sorted((split(p)[0], split(p)[1]) for p in err[:-1]) == [
        (str(path), 3),
        (str(path), 6),
        (str(path), 17),
        (str(path), 28),
    ]


def test_cli_check_single_problem_uses_singular(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[memory]\nmax_messages = 0\n")
    assert cli.main(["check", "--config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == "1 problem found"


def test_cli_check_good_config_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = MISTAKES.replace('regoin = "us"', 'region = "us"').replace("-3", "3")
    good = good.replace('"sometimes"', "true").replace('"kids"', '"minors"')
    path = write(tmp_path, good)
    assert cli.main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == f"{path}: OK (2 network(s), 4 room(s))"
    assert out.err == ""


@pytest.mark.slow
def test_console_script_reports_bad_config(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "presencebot"
    path = write(tmp_path, MISTAKES)
    env = {k: v for k, v in os.environ.items() if not k.startswith(config.ENV_PREFIX)}
    result = subprocess.run(
        [str(script), "check", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[-1] == "4 problems found"
    assert f"{path}:28: networks[1].rooms[1].audience: " in result.stderr
    assert "Traceback" not in result.stderr


def test_config_schema_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config-schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["type"] == "object"
    assert {"networks", "agency", "memory", "store"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    network = schema["$defs"]["NetworkConfig"]
    assert set(network["required"]) == {"name", "adapter"}


# --- `check` resolves plugins: adapters, their settings, rules ---------------------------------

PLUGIN_MISTAKES = """\
[room_defaults]
rules = ["minor_whereabouts", "no_such_rule"]

[[networks]]
name = "local"
adapter = "terminal"
settings = { color = "purple" }

[[networks.rooms]]
id = "#local"
rules = ["another_missing_rule"]

[[networks]]
name = "chat"
adapter = "ircx"

[[networks]]
name = "off"
adapter = "also_missing"
enabled = false
"""


def test_check_reports_adapter_settings_and_rule_problems_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, PLUGIN_MISTAKES)
    assert cli.main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "4 problems found"
    found = {split(p)[1:3]: split(p)[3] for p in err[:-1]}
    assert set(found) == {
        (7, "networks[0].settings.color"),
        (15, "networks[1].adapter"),
        (2, "room_defaults.rules"),
        (11, "networks[0].rooms[0].rules"),
    }
    assert "'auto', 'always' or 'never'" in found[7, "networks[0].settings.color"]
    adapter = found[15, "networks[1].adapter"]
    assert "'ircx'" in adapter
    installed = re.search(r"installed: ([^)]*)", adapter)
    assert installed
    assert "terminal" in installed[1].split(", ")
    assert "'no_such_rule'" in found[2, "room_defaults.rules"]
    assert "'another_missing_rule'" in found[11, "networks[0].rooms[0].rules"]
    assert not any("also_missing" in p for p in err)  # a disabled network is not loaded


def test_resolve_accepts_valid_adapter_settings() -> None:
    text = '[[networks]]\nname = "local"\nadapter = "terminal"\nsettings = { color = "never", bot_nick = "pb" }\n'
    parsed = config.parse(text, environ={})
    resolved = checks.resolve(parsed, text=text, source="ok.toml")
    cls, settings = resolved.adapters["local"]
    assert cls.__name__ == "TerminalAdapter"
    assert settings.model_dump() == {"color": "never", "bot_nick": "pb"}
    assert [rule.id for rule in resolved.rules] == ["minor_whereabouts"]


# --- environment overrides ---------------------------------------------------------------------

TWO_NETWORKS = """\
[[networks]]
name = "local"
adapter = "terminal"

[[networks]]
name = "other"
adapter = "terminal"
settings = { bot_nick = "keep" }
"""


def test_env_sets_store_path() -> None:
    parsed = config.parse(None, environ={"PRESENCEBOT_STORE__PATH": "/x.db"})
    assert parsed.store.path == Path("/x.db")


def test_env_value_is_converted_and_unprefixed_variables_are_ignored() -> None:
    environ = {"PRESENCEBOT_MEMORY__MAX_MESSAGES": "42", "PRESENCEBOT": "x", "STORE__PATH": "/y.db"}
    parsed = config.parse("[memory]\nmax_messages = 7\n", environ=environ)
    assert parsed.memory.max_messages == 42
    assert parsed.store.path == Path("presencebot.db")


def test_env_reaches_the_named_network_settings() -> None:
    parsed = config.parse(TWO_NETWORKS, environ={"PRESENCEBOT_NETWORKS__LOCAL__SETTINGS__BOT_NICK": "x"})
    assert parsed.network("local").settings == {"bot_nick": "x"}
    assert parsed.network("other").settings == {"bot_nick": "keep"}
    checks.resolve(parsed)  # and the adapter accepts it


def test_env_reaches_the_default_network_when_the_file_lists_none() -> None:
    environ = {"PRESENCEBOT_NETWORKS__LOCAL__SETTINGS__BOT_NICK": "x"}
    for text in (None, "[memory]\nmax_messages = 5\n"):
        parsed = config.parse(text, environ=environ)
        assert parsed.network("local").settings == {"bot_nick": "x"}
        assert parsed.network("local").rooms == config.Config().network("local").rooms
    assert config.parse(None, environ={"PRESENCEBOT_NETWORKS__LOCAL__ENABLED": "true"}) == config.Config()


def test_env_naming_a_missing_network_is_a_clear_error() -> None:
    problems = problems_of(TWO_NETWORKS, environ={"PRESENCEBOT_NETWORKS__NOPE__SETTINGS__BOT_NICK": "x"})
    assert problems == ["PRESENCEBOT_NETWORKS__NOPE__SETTINGS__BOT_NICK: no entry named 'nope' in 'networks'"]


@pytest.mark.parametrize(
    ("var", "expected", "on_defaults"),
    [
        ("PRESENCEBOT_NETWORKS", "cannot replace the whole list 'networks' from the environment", True),
        ("PRESENCEBOT_NETWORKS__LOCAL", "cannot replace the whole entry 'local' of 'networks'", True),
        ("PRESENCEBOT_STORE__PATH__DEEPER", "'path' is not a table, cannot set 'deeper' in it", False),
    ],
)
def test_env_that_cannot_apply_names_the_variable(var: str, expected: str, on_defaults: bool) -> None:
    [problem] = problems_of('[store]\npath = "a.db"\n' + TWO_NETWORKS, environ={var: "x"})
    assert problem.startswith(f"{var}: {expected}")
    if on_defaults:
        with pytest.raises(ConfigError) as caught:
            config.parse(None, environ={var: "x"})
        assert caught.value.problems == [problem]


def test_invalid_env_value_is_blamed_on_the_variable_not_the_file() -> None:
    text = '[memory]\nmax_messages = 100\n\n[[networks]]\nname = "local"\nadapter = "terminal"\n'
    environ = {"PRESENCEBOT_MEMORY__MAX_MESSAGES": "-1", "PRESENCEBOT_NETWORKS__LOCAL__ENABLED": "perhaps"}
    problems = problems_of(text, environ=environ)
    assert sorted(problems) == sorted(
        [
            "PRESENCEBOT_MEMORY__MAX_MESSAGES: memory.max_messages: "
            "Input should be greater than or equal to 1 (got '-1')",
            "PRESENCEBOT_NETWORKS__LOCAL__ENABLED: networks[0].enabled: "
            "Input should be a valid boolean, unable to interpret input (got 'perhaps')",
        ]
    )


# --- secrets -----------------------------------------------------------------------------------

SECRET = "hunter2-SECRET-9f8e7d"


class _SecretiveSettings(BaseModel):
    """Stands in for a chat-network adapter's settings with credentials."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nick: str = Field(default="pb", max_length=8)
    token: str = Field(default="t" * 40, min_length=40)
    nickserv_pass: str = Field(default="p" * 8, max_length=8)
    api_key: str = "k" * 8

    @field_validator("api_key")
    @classmethod
    def _shape(cls, value: str) -> str:
        if not value.startswith("k"):
            raise ValueError(f"{value!r} does not look like an API key")
        return value

    @model_validator(mode="after")
    def _not_same(self) -> _SecretiveSettings:
        if self.nick == "same":
            raise ValueError(f"nick must differ from token {self.token}")
        return self


class _SecretiveAdapter(Adapter):
    Settings: ClassVar[type[BaseModel]] = _SecretiveSettings


SECRETS_FILE = f"""\
[[networks]]
name = "net"
adapter = "secretive"

[networks.settings]
nick = "nickname-too-long"
token = "{SECRET}"
nickserv_pass = "{SECRET}"
api_key = "{SECRET}"
"""


def _resolve_secretive(monkeypatch: pytest.MonkeyPatch, text: str) -> list[str]:
    real = plugins.load_adapter
    monkeypatch.setattr(
        plugins, "load_adapter", lambda name: _SecretiveAdapter if name == "secretive" else real(name)
    )
    parsed = config.parse(text, environ={})
    with pytest.raises(ConfigError) as caught:
        checks.resolve(parsed, text=text, source="s.toml")
    return caught.value.problems


def test_invalid_secrets_are_located_but_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    problems = _resolve_secretive(monkeypatch, SECRETS_FILE)
    assert not any(SECRET in p for p in problems), problems
    assert not any("hunter2" in p for p in problems), problems
    found = {split(p)[:3]: split(p)[3] for p in problems}
    assert set(found) == {
        ("s.toml", 6, "networks[0].settings.nick"),
        ("s.toml", 7, "networks[0].settings.token"),
        ("s.toml", 8, "networks[0].settings.nickserv_pass"),
        ("s.toml", 9, "networks[0].settings.api_key"),
    }
    assert "(got 'nickname-too-long')" in found["s.toml", 6, "networks[0].settings.nick"]
    assert "at least 40 characters" in found["s.toml", 7, "networks[0].settings.token"]
    assert "at most 8 characters" in found["s.toml", 8, "networks[0].settings.nickserv_pass"]
    assert "does not look like an API key" in found["s.toml", 9, "networks[0].settings.api_key"]


def test_model_level_error_does_not_leak_a_secret_it_quotes(monkeypatch: pytest.MonkeyPatch) -> None:
    text = SECRETS_FILE.replace("nickname-too-long", "same").replace(
        f'nickserv_pass = "{SECRET}"\napi_key = "{SECRET}"\n', ""
    )
    text = text.replace(f'token = "{SECRET}"', f'token = "{SECRET * 2}"')
    [problem] = _resolve_secretive(monkeypatch, text)
    assert SECRET not in problem
    assert split(problem)[:3] == ("s.toml", 5, "networks[0].settings")
    assert "nick must differ from token ***" in problem


def test_secret_from_the_environment_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESENCEBOT_NETWORKS__LOCAL__SETTINGS__PASSWORD", SECRET)
    path_text = DEFAULT_FILE.read_text(encoding="utf-8")
    parsed = config.parse(path_text)
    with pytest.raises(ConfigError) as caught:
        checks.resolve(parsed, text=path_text, source="f.toml")
    [problem] = caught.value.problems
    assert SECRET not in problem
    assert "networks[0].settings.password: unknown setting" in problem


def test_describe_errors_keeps_harmless_values() -> None:
    class Room(BaseModel):
        max_users: int = Field(ge=1)
        author_name: str = Field(max_length=3)

    with pytest.raises(ValidationError) as caught:
        Room.model_validate({"max_users": 0, "author_name": "abcd"})
    problems = config.describe_errors(
        caught.value, source="r.toml", text="max_users = 0\nauthor_name = 'abcd'\n"
    )
    assert problems[0] == "r.toml:1: max_users: Input should be greater than or equal to 1 (got 0)"
    # The location and message stay whether or not the value is shown ("author" contains "auth").
    assert problems[1].startswith("r.toml:2: author_name: String should have at most 3 characters")


# --- unreadable files --------------------------------------------------------------------------


def test_not_toml_is_one_clear_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "[agency]\nname = Demo Police\nregion = 'uk'\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}: not valid TOML: ")
    assert "line 2" in problem


def test_missing_file_is_a_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    assert caught.value.problems == [f"{path}: cannot read the config file: No such file or directory"]


def test_directory_is_a_clear_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(tmp_path, environ={})
    [problem] = caught.value.problems
    assert problem.startswith(f"{tmp_path}: cannot read the config file: ")


def test_non_utf8_file_is_a_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[agency]\nname = "Sûreté"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    assert caught.value.problems == [f"{path}: the config file is not UTF-8 text"]


def test_load_returns_the_text_it_parsed(tmp_path: Path) -> None:
    text = '[agency]\nname = "Élan Police"\n'
    parsed, loaded = config.load(write(tmp_path, text), environ={})
    assert loaded == text
    assert parsed.agency.name == "Élan Police"


def test_cli_reports_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "--config", str(tmp_path / "absent.toml")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{tmp_path / 'absent.toml'}: cannot read the config file: No such file or directory",
        "1 problem found",
    ]


# --- duplicates --------------------------------------------------------------------------------


def test_duplicate_network_names_are_reported_with_a_line() -> None:
    text = (
        '[agency]\nname = "x"\n\n[[networks]]\nname = "a"\nadapter = "terminal"\n'
        '[[networks]]\nname = "b"\nadapter = "terminal"\n[[networks]]\nname = "a"\nadapter = "terminal"\n'
    )
    [problem] = problems_of(text)
    where, line, path, message = split(problem)
    assert (where, line, path) == ("bad.toml", 4, "networks")
    assert "network names must be unique; repeated: a" in message


def test_duplicate_room_ids_are_reported_per_network() -> None:
    text = """\
[[networks]]
name = "a"
adapter = "terminal"
[[networks.rooms]]
id = "#same"

[[networks]]
name = "b"
adapter = "terminal"
[[networks.rooms]]
id = "#x"
[[networks.rooms]]
id = "#x"
"""
    [problem] = problems_of(text)
    where, line, path, message = split(problem)
    assert (where, line, path) == ("bad.toml", 7, "networks[1]")
    assert "room '#x' is listed twice" in message


def test_same_room_id_on_two_networks_is_fine() -> None:
    text = (
        '[[networks]]\nname = "a"\nadapter = "terminal"\n[[networks.rooms]]\nid = "#r"\n'
        '[[networks]]\nname = "b"\nadapter = "terminal"\n[[networks.rooms]]\nid = "#r"\n'
    )
    parsed = config.parse(text, environ={})
    assert [n.rooms[0].id for n in parsed.networks] == ["#r", "#r"]


@pytest.mark.parametrize(
    "example", sorted((DEFAULT_FILE.parent / "examples").glob("*.toml")), ids=lambda p: p.name
)
def test_example_configs_pass_check(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "--config", str(example)]) == 0, capsys.readouterr()


def test_irc_settings_mistakes_are_reported_with_their_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "irc.toml"
    path.write_text(
        '[[networks]]\nname = "libera"\nadapter = "irc"\n\n[networks.settings]\nhost = "irc.libera.chat"\n'
        'sasl = "plain"\nflood_rate = -1\nnick = "9bad"\n'
    )
    assert cli.main(["check", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "flood_rate" in out and "nick" in out and ":8" in out  # flood_rate is on line 8
