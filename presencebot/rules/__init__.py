"""Rules shipped with presencebot, each registered in the ``presencebot.rules`` entry points.

The rule interface itself lives in :mod:`presencebot.rule`; see ``docs/rules.md``.
"""
