"""Serving the console with uvicorn inside the bot's event loop (or on its own)."""

from __future__ import annotations

import uvicorn

from presencebot.config import Config
from presencebot.console.app import Say, create_app
from presencebot.ops_server import EmbeddedServer
from presencebot.store.sql import SQLStore


def server(config: Config, store: SQLStore, *, say: Say | None, embedded: bool = False) -> uvicorn.Server:
    app = create_app(config, store, say=say)
    settings = uvicorn.Config(
        app,
        host=config.console.host,
        port=config.console.port,
        log_level="warning",
        access_log=False,  # URLs carry alert ids; the audit log records what matters
        lifespan="off",
        server_header=False,
    )
    return EmbeddedServer(settings) if embedded else uvicorn.Server(settings)


async def serve(config: Config, store: SQLStore, *, say: Say | None) -> None:
    await server(config, store, say=say).serve()
