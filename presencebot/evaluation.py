"""``presencebot eval``: precision, recall and F1 of the rules on a labelled corpus.

The corpus format is described in ``shared/eval/FORMAT.md`` (and ``docs/rules.md``): one
conversation per JSON line, each message optionally carrying the flag it must raise. Scoring is
per message, the way the bot works live: a flag counts only on the message that completes the
request, and only if it names the right target.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from presencebot.errors import CorpusError
from presencebot.replay import Line, replay
from presencebot.rule import Rule


@dataclass(slots=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_json(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


@dataclass(frozen=True, slots=True)
class Expected:
    target: str
    category: str


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    lang: str
    room: str
    audience: str
    lines: tuple[Line, ...]
    expected: tuple[Expected | None, ...]


@dataclass(slots=True)
class Report:
    overall: Counts = field(default_factory=Counts)
    by_category: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    by_lang: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    category_agree: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    conversations: int = 0
    messages: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            **self.overall.to_json(),
            "category_accuracy": round(self.category_agree / self.overall.tp, 4) if self.overall.tp else None,
            "conversations": self.conversations,
            "messages": self.messages,
            "by_category": {k: v.to_json() for k, v in sorted(self.by_category.items())},
            "by_lang": {k: v.to_json() for k, v in sorted(self.by_lang.items())},
            "errors": self.errors,
        }


def load_corpus(path: Path) -> list[Conversation]:
    """Parse a JSON Lines corpus, naming the line and field of the first problem found."""
    conversations = []
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read the corpus: {exc.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                conversations.append(_conversation(raw, f"{path}:{number}"))
    return conversations


def _conversation(raw: str, where: str) -> Conversation:
    try:
        obj = json.loads(raw)
        lines, expected = [], []
        for i, m in enumerate(obj["messages"]):
            lines.append(
                Line(
                    user=str(m["user"]),
                    text=str(m["text"]),
                    t=float(m.get("t", i)),
                    reply_to=m.get("reply_to"),
                )
            )
            flag = m.get("flag")
            expected.append(Expected(str(flag["target"]), str(flag["category"])) if flag else None)
        return Conversation(
            id=str(obj["id"]),
            lang=str(obj.get("lang", "en")),
            room=str(obj.get("room", {}).get("name", "#eval")),
            audience=str(obj.get("room", {}).get("audience", "general")),
            lines=tuple(lines),
            expected=tuple(expected),
        )
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{where}: not valid JSON: {exc.msg}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorpusError(f"{where}: not a conversation in the corpus format ({exc!r})") from None


async def evaluate(conversations: Iterable[Conversation], rules: Sequence[Rule]) -> Report:
    report = Report()
    for conv in conversations:
        report.conversations += 1
        try:
            flags_per_line = await replay(
                conv.lines, rules, room=conv.room, audience=conv.audience, language=conv.lang
            )
        except ValueError as exc:
            raise CorpusError(f"conversation {conv.id}: {exc}") from None
        for index, (line, want, flags) in enumerate(
            zip(conv.lines, conv.expected, flags_per_line, strict=True)
        ):
            report.messages += 1
            got = [(f.target.nick, f.category, f.explanation) for f in flags]
            right = [g for g in got if want is not None and g[0] == want.target]
            wrong = [g for g in got if want is None or g[0] != want.target]
            if want is not None:
                counts = (
                    report.overall,
                    report.by_category[want.category],
                    report.by_lang[conv.lang],
                )
                if right:
                    for c in counts:
                        c.tp += 1
                    report.category_agree += any(g[1] == want.category for g in right)
                else:
                    for c in counts:
                        c.fn += 1
                    report.errors.append(_error("fn", conv, index, line, want, got))
            if wrong:
                for c in (
                    report.overall,
                    report.by_category[wrong[0][1]],
                    report.by_lang[conv.lang],
                ):
                    c.fp += 1
                report.errors.append(_error("fp", conv, index, line, want, wrong))
    return report


def _error(
    kind: str,
    conv: Conversation,
    index: int,
    line: Line,
    want: Expected | None,
    got: list[tuple[str, str, str]],
) -> dict[str, Any]:
    return {
        "kind": kind,
        "conversation": conv.id,
        "index": index,
        "lang": conv.lang,
        "text": line.text,
        "expected": None if want is None else {"target": want.target, "category": want.category},
        "flags": [{"target": t, "category": c, "explanation": e} for t, c, e in got],
    }


def format_report(report: Report) -> str:
    def row(name: str, c: Counts) -> str:
        return f"{name:<12} {c.precision:>9.3f} {c.recall:>7.3f} {c.f1:>6.3f} {c.tp:>5} {c.fp:>5} {c.fn:>5}"

    out = [
        f"{report.conversations} conversations, {report.messages} messages",
        f"{'':<12} {'precision':>9} {'recall':>7} {'f1':>6} {'tp':>5} {'fp':>5} {'fn':>5}",
        row("overall", report.overall),
    ]
    out += [row(f"  {k}", v) for k, v in sorted(report.by_category.items())]
    out += [row(f"  lang {k}", v) for k, v in sorted(report.by_lang.items())]
    if report.overall.tp:
        out.append(f"category accuracy on true positives: {report.category_agree / report.overall.tp:.3f}")
    for err in report.errors:
        flags = (
            "; ".join(f"{f['target']}/{f['category']}: {f['explanation']}" for f in err["flags"]) or "no flag"
        )
        want = err["expected"]
        out.append(
            f"{err['kind'].upper()} {err['conversation']}#{err['index']}"
            f" expected={want['target'] + '/' + want['category'] if want else 'none'} got={flags}"
        )
    return "\n".join(out)
