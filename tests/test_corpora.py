"""Detection quality on labelled corpora, as regression guards (the figures go in the notes).

the corpora in ``tests/data/`` were each written independently of
the rule (by someone who saw neither the rule nor the development corpus), measured once as
unseen data (figures in the issue notes), then used to find gaps. The shared development corpus
lives beside the checkout in CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from presencebot.evaluation import evaluate, load_corpus
from presencebot.rules.minor_whereabouts import RULE
from tests.support import REPO, require

DATA = REPO / "tests" / "data"
DEV = REPO.parent / "shared" / "eval" / "dev.jsonl"
CORPORA = sorted(path.name for path in DATA.glob("*.jsonl"))


async def _report(path: Path):  # type: ignore[no-untyped-def]
    return await evaluate(load_corpus(path), [RULE])


@pytest.mark.parametrize("name", CORPORA)
async def test_independent_corpora(name: str) -> None:
    report = await _report(DATA / name)
    assert report.overall.precision >= 0.97, report.errors
    assert report.overall.recall >= 0.95, report.errors
    if "fr" in report.by_lang:
        assert report.by_lang["fr"].recall >= 0.90


async def test_development_corpus_meets_the_issue_goals() -> None:
    require(DEV.exists(), f"the shared development corpus is not at {DEV}")
    report = await _report(DEV)
    assert report.overall.precision >= 0.97, report.errors
    assert report.overall.recall >= 0.95, report.errors
    assert report.by_lang["fr"].recall >= 0.90, report.errors


@pytest.mark.parametrize("name", CORPORA)
def test_corpora_are_well_formed(name: str) -> None:
    conversations = load_corpus(DATA / name)
    assert len({c.id for c in conversations}) == len(conversations)
    for conv in conversations:
        users = {line.user for line in conv.lines}
        times = [line.t for line in conv.lines]
        assert times == sorted(times), conv.id
        for want in conv.expected:
            if want is not None:
                assert want.target in users, conv.id
                assert want.category in {"address", "location", "school", "meetup"}, conv.id
