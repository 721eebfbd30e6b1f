"""The badge assets (SVG master and PNG renders), shipped inside the wheel as ``presencebot.logos``.

Read them with :func:`presencebot.badge.asset_bytes`, never by a path relative to the repository,
so that an installed wheel finds them from any working directory.
"""
