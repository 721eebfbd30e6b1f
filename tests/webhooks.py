"""A signed-webhook endpoint on loopback, for tests of alert delivery.

It checks every signature (a bad one is counted and answered 401), answers as it is told
(``answers``, one per request, then 200; or 503 to everything while ``down``), and records what it
accepted: the ``webhook-id`` of each delivery and its JSON body.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from presencebot.sinks.webhook import verify

SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"  # base64 of a 24-byte secret


@dataclass
class Receiver:
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    """What to answer the next requests with: (status, headers), each used once."""
    down: bool = False
    """Answer 503 to everything (counted in ``refused``) until set back."""
    refused: int = 0
    bad_signatures: int = 0

    @property
    def alerts(self) -> Counter[str]:
        """Deliveries accepted per alert id."""
        return Counter(body["data"]["id"] for body in self.received)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET, request.headers, body):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.down:
            self.refused += 1
            return web.Response(status=503)
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        if 200 <= status < 300:
            self.ids.append(request.headers["webhook-id"])
            self.received.append(json.loads(body))
        return web.Response(status=status, headers=headers)


@contextlib.asynccontextmanager
async def receivers(*names: str) -> AsyncIterator[dict[str, Receiver]]:
    """One running :class:`Receiver` per name (its ``url`` set), stopped on exit."""
    made: dict[str, Receiver] = {}
    async with contextlib.AsyncExitStack() as stack:
        for name in names:
            receiver = made[name] = Receiver()
            app = web.Application()
            app.router.add_post("/hook", receiver.handle)
            runner = web.AppRunner(app)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        yield made
