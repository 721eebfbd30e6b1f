"""The operations endpoint: ``/metrics`` for Prometheus and ``/healthz`` for whoever watches the bot.

It runs inside the bot's event loop (uvicorn embedded like the console, leaving signals to the
runtime) and reads live state directly: nothing here is stored, nothing changes state. It binds to
127.0.0.1 by default: room names and kick reasons are for operators, not the internet.

The socket is bound *before* uvicorn starts: uvicorn answers a port already in use with
``sys.exit``, which inside the bot would take the whole bot down over a metrics port. Here a bind
failure is logged and the bot carries on without the endpoint (its absence is what the monitoring
notices).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
from collections.abc import Generator
from typing import TYPE_CHECKING

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from presencebot import metrics
from presencebot.errors import StoreError
from presencebot.health import check
from presencebot.metrics import REGISTRY, Collector, Registry
from presencebot.runtime import RoomState
from presencebot.store.sql import SQLStore

if TYPE_CHECKING:
    from presencebot.runtime import Runtime

log = structlog.get_logger("presencebot.ops")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NO_STORE = {"Cache-Control": "no-store"}


# --- live state into gauges, at scrape time ------------------------------------------------------
def collect_networks(runtime: Runtime) -> None:
    """Rooms by state (every state present, at 0 if need be, so that ``rooms{state="failed"} > 0``
    alerts fire on a change rather than on a series appearing), connection, restarts."""
    metrics.ROOMS.clear()
    metrics.CONNECTED.clear()
    metrics.ADAPTER_RESTARTS.clear()
    for name, slot in runtime.networks.items():
        counts = dict.fromkeys(RoomState, 0)
        for record in slot.rooms.values():
            counts[record.state] += 1
        for state, count in counts.items():
            metrics.ROOMS.labels(name, state.value).set(count)
        metrics.CONNECTED.labels(name).set(1 if slot.connected else 0)
        metrics.ADAPTER_RESTARTS.labels(name).set_total(slot.restarts)


def collect_rules(runtime: Runtime) -> None:
    """Mirror the pipeline's own per-rule counters rather than count a second time."""
    for metric in (metrics.FLAGS, metrics.RULE_ERRORS, metrics.RULE_OVERRUNS):
        metric.clear()
    for rule_id, stats in runtime.pipeline.stats.items():
        metrics.FLAGS.labels(rule_id).set_total(stats.flags)
        metrics.RULE_ERRORS.labels(rule_id).set_total(stats.errors)
        metrics.RULE_OVERRUNS.labels(rule_id).set_total(stats.overruns)


def collect_dispatcher(runtime: Runtime) -> None:
    dispatcher = runtime.dispatcher
    if dispatcher is None:
        return
    metrics.NOTIFICATIONS.labels("delivered").set_total(dispatcher.delivered)
    metrics.NOTIFICATIONS.labels("dead").set_total(dispatcher.dead)


def _outbox_counts(conn: sqlite3.Connection) -> dict[str, int]:
    # GROUP BY rather than delivery.rows(): delivered rows pile up, loading them all per scrape would not do.
    return {
        str(state): int(n) for state, n in conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")
    }


async def collect_outbox(runtime: Runtime) -> None:
    """Outbox rows by state (pending and dead always present), and whether the store answered."""
    store = runtime.store
    if not isinstance(store, SQLStore):
        return
    try:
        counts = await store.read(_outbox_counts)
    except StoreError as exc:
        log.warning("ops.outbox_unreadable", error=str(exc))
        metrics.STORE_UP.set(0)
        metrics.OUTBOX_DEPTH.clear()
        return
    metrics.STORE_UP.set(1)
    metrics.OUTBOX_DEPTH.clear()
    for state, count in {"pending": 0, "dead": 0, **counts}.items():
        metrics.OUTBOX_DEPTH.labels(state).set(count)


def runtime_collectors(runtime: Runtime) -> tuple[Collector, ...]:
    """The collect callbacks that fill the module-level metrics from ``runtime`` at scrape time."""

    async def outbox() -> None:
        await collect_outbox(runtime)

    return (
        lambda: collect_networks(runtime),
        lambda: collect_rules(runtime),
        lambda: collect_dispatcher(runtime),
        outbox,
    )


# --- the app -------------------------------------------------------------------------------------
def ops_app(runtime: Runtime | None, registry: Registry = REGISTRY) -> Starlette:
    """``/metrics`` and ``/healthz`` for ``runtime`` (``None``: metrics only, health always ok).

    The live-state collectors fill the module-level metrics, which live in :data:`REGISTRY`: pass
    another ``registry`` only to serve metrics of one's own (tests of the exposition).
    """
    extra = runtime_collectors(runtime) if runtime is not None else ()

    async def metrics_endpoint(_request: Request) -> Response:
        text = await registry.scrape(*extra)
        # backslashreplace: a label value from a lenient decoder must not fail the whole scrape.
        body = text.encode("utf-8", "backslashreplace")
        return Response(body, headers={**NO_STORE, "Content-Type": CONTENT_TYPE})

    async def healthz_endpoint(_request: Request) -> Response:
        if runtime is None:
            return JSONResponse({"ok": True, "networks": {}}, headers=NO_STORE)
        ok, report = await check(runtime)
        return JSONResponse(report, status_code=200 if ok else 503, headers=NO_STORE)

    return Starlette(
        routes=[
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/healthz", healthz_endpoint, methods=["GET"]),
        ]
    )


# --- serving -------------------------------------------------------------------------------------
class EmbeddedServer(uvicorn.Server):
    """Leaves SIGINT/SIGTERM to the bot's runtime, which stops this server with everything else."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (``port`` 0: any free one). Raises ``OSError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    return sock


class OpsServer:
    """The endpoint's lifecycle inside the runtime: :meth:`start`, then :meth:`stop` at the end."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 9108) -> None:
        self.host = host
        self.port = port
        self._server = EmbeddedServer(
            uvicorn.Config(
                app,
                log_config=None,  # the bot configures logging; uvicorn's dictConfig must not undo it
                log_level="warning",
                access_log=False,  # a scrape every 15 s is not worth a log line
                lifespan="off",
                server_header=False,
            )
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> bool:
        """Bind and serve in the background; False (logged) if the address cannot be bound.

        The socket listens before this returns, so a request right after it queues rather than
        being refused while uvicorn starts.
        """
        try:
            sock = bind(self.host, self.port)
        except OSError as exc:
            log.error("ops.bind_failed", host=self.host, port=self.port, error=str(exc))
            return False
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="ops")
        log.info("ops.serving", host=self.host, port=self.port)
        return True

    async def stop(self, grace_seconds: float = 5.0) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, grace_seconds)
        self._task = None
