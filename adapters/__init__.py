"""Protocol adapters shipped with presencebot, installed as ``presencebot.adapters``.

Each subpackage holds all of one protocol's detail and registers itself in the
``presencebot.adapters`` entry-point group; the core never imports from here.
"""
