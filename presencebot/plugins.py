"""Loading adapters and rules through entry points — the only way the core reaches them.

A third-party package plugs in exactly like the built-ins: it declares an entry point in the
``presencebot.adapters`` or ``presencebot.rules`` group, and it is found once installed.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from presencebot.adapter import Adapter
from presencebot.errors import PluginError
from presencebot.rule import Rule

ADAPTERS_GROUP = "presencebot.adapters"
RULES_GROUP = "presencebot.rules"


def _entry_point(group: str, name: str, kind: str) -> EntryPoint:
    found = entry_points(group=group, name=name)
    if not found:
        available = ", ".join(sorted(ep.name for ep in entry_points(group=group))) or "none"
        raise PluginError(f"no {kind} named {name!r} is installed (installed: {available})")
    return next(iter(found))


def available(group: str) -> list[str]:
    return sorted(ep.name for ep in entry_points(group=group))


def load_adapter(name: str) -> type[Adapter]:
    ep = _entry_point(ADAPTERS_GROUP, name, "adapter")
    try:
        obj = ep.load()
    except Exception as exc:
        raise PluginError(f"adapter {name!r} ({ep.value}) failed to load: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, Adapter)):
        raise PluginError(f"adapter {name!r} ({ep.value}) is not an Adapter subclass")
    return obj


def load_rule(name: str) -> Rule:
    ep = _entry_point(RULES_GROUP, name, "rule")
    try:
        obj = ep.load()
    except Exception as exc:
        raise PluginError(f"rule {name!r} ({ep.value}) failed to load: {exc}") from exc
    if not isinstance(obj, Rule):
        raise PluginError(f"rule {name!r} ({ep.value}) has no id/version/check")
    if obj.id != name:
        raise PluginError(f"rule entry point {name!r} loads a rule whose id is {obj.id!r}")
    return obj


def load_rules(names: Iterable[str]) -> list[Rule]:
    return [load_rule(n) for n in sorted(set(names))]
