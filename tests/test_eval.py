"""``presencebot eval``: scoring on a small corpus written for the test, and the CLI contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from presencebot.cli import main
from presencebot.errors import CorpusError
from presencebot.evaluation import evaluate, load_corpus
from presencebot.rules.minor_whereabouts import RULE
from tests.support import REPO, require

BIN = Path(sys.executable).parent / "presencebot"


def conv(cid: str, lang: str, audience: str, messages: list[dict[str, object]]) -> str:
    return json.dumps(
        {"id": cid, "lang": lang, "room": {"name": "#t", "audience": audience}, "messages": messages}
    )


CORPUS = "\n".join(
    [
        # true positive (location, en)
        conv(
            "tp",
            "en",
            "general",
            [
                {"t": 0, "user": "amy", "text": "im 12"},
                {
                    "t": 5,
                    "user": "bob",
                    "text": "amy where do u live",
                    "flag": {"target": "amy", "category": "location"},
                },
            ],
        ),
        # false negative (school, en): a phrasing the rule does not know
        conv(
            "fn",
            "en",
            "general",
            [
                {"t": 0, "user": "amy", "text": "im 12"},
                {
                    "t": 5,
                    "user": "bob",
                    "text": "amy u at st marys?",
                    "flag": {"target": "amy", "category": "school"},
                },
            ],
        ),
        # false positive (fr): labelled as not to flag
        conv(
            "fp",
            "fr",
            "minors",
            [
                {"t": 0, "user": "zoe", "text": "salut"},
                {"t": 5, "user": "max", "text": "zoe t'habites où"},
            ],
        ),
        # wrong target: expected amy, flagged cat -> one fn and one fp
        conv(
            "wrong",
            "en",
            "minors",
            [
                {"t": 0, "user": "amy", "text": "hi"},
                {"t": 1, "user": "cat", "text": "yo"},
                {
                    "t": 5,
                    "user": "bob",
                    "text": "cat what school do u go to",
                    "flag": {"target": "amy", "category": "school"},
                },
            ],
        ),
    ]
)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "c.jsonl"
    path.write_text(CORPUS + "\n\n", encoding="utf-8")
    return path


async def test_scores(corpus: Path) -> None:
    report = await evaluate(load_corpus(corpus), [RULE])
    assert (report.overall.tp, report.overall.fp, report.overall.fn) == (1, 2, 2)
    assert report.overall.precision == pytest.approx(1 / 3)
    assert report.overall.recall == pytest.approx(1 / 3)
    assert (report.by_lang["en"].tp, report.by_lang["en"].fp, report.by_lang["en"].fn) == (1, 1, 2)
    assert (report.by_lang["fr"].tp, report.by_lang["fr"].fp) == (0, 1)
    assert (report.by_category["school"].fn, report.by_category["school"].fp) == (2, 1)
    assert report.by_category["location"].tp == 1
    kinds = sorted((e["kind"], e["conversation"], e["index"]) for e in report.errors)
    assert kinds == [("fn", "fn", 1), ("fn", "wrong", 2), ("fp", "fp", 1), ("fp", "wrong", 2)]
    fp = next(e for e in report.errors if e["conversation"] == "fp")
    assert fp["flags"][0]["explanation"]


def test_cli_json_has_the_documented_keys(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(corpus), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    six = {"precision", "recall", "f1", "tp", "fp", "fn"}
    assert six | {"by_category", "by_lang", "errors"} <= out.keys()
    for group in ("by_category", "by_lang"):
        for name, figures in out[group].items():
            assert six <= figures.keys(), name
    assert {"conversation", "index"} <= out["errors"][0].keys()


def test_cli_text_report(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(corpus)]) == 0
    out = capsys.readouterr().out
    assert "overall" in out and "lang fr" in out and "FN fn#1" in out


def test_bad_corpus_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(CORPUS.splitlines()[0] + "\n{not json\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad.jsonl:2: not valid JSON"):
        load_corpus(path)
    path.write_text('{"id": "x"}\n', encoding="utf-8")
    assert main(["eval", str(path)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


DEV = REPO.parent / "shared" / "eval" / "dev.jsonl"


def test_dev_corpus_runs_through_the_console_script() -> None:
    require(DEV.exists(), f"the shared development corpus is not at {DEV}")
    result = subprocess.run(
        [str(BIN), "eval", str(DEV), "--json"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["conversations"] == sum(1 for line in DEV.read_text().splitlines() if line.strip())
    assert out["tp"] + out["fn"] > 0
