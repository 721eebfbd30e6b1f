"""The ``presencebot`` command: run the bot, check a config, and look after alerts.

Exit status: 0 success, 1 runtime failure (an adapter stopped on a fatal error, a store
error), 2 bad usage or bad config/corpus — so scripts can tell "fix your file" from "try again".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from presencebot import __version__, log
from presencebot import config as config_mod
from presencebot.alerts import Alert, AlertState
from presencebot.checks import coverage_problems, resolve
from presencebot.config import Config
from presencebot.errors import (
    AlertNotFound,
    ConfigError,
    CorpusError,
    PluginError,
    PresencebotError,
    StoreError,
)
from presencebot.ids import AlertId
from presencebot.store import delivery, open_store

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="presencebot",
        description="An overt police-presence bot for public chat rooms.",
    )
    parser.add_argument("--version", action="version", version=f"presencebot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser, required: bool = False) -> None:
        p.add_argument(
            "--config",
            "-c",
            type=Path,
            required=required,
            metavar="FILE",
            help="TOML config file (default: the built-in defaults: a terminal room)",
        )

    run = sub.add_parser("run", help="run the bot")
    with_config(run)

    check = sub.add_parser("check", help="validate a config file and report every problem")
    with_config(check)

    sub.add_parser("config-schema", help="print the config JSON schema")

    alerts = sub.add_parser("alerts", help="list, show and acknowledge alerts")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    lst = alerts_sub.add_parser("list", help="list alerts, newest first")
    lst.add_argument("--state", choices=[s.value for s in AlertState])
    lst.add_argument("--limit", type=int, default=50)
    show = alerts_sub.add_parser("show", help="show one alert with its evidence")
    show.add_argument("alert_id")
    ack = alerts_sub.add_parser("ack", help="acknowledge an alert")
    ack.add_argument("alert_id")
    ack.add_argument("--by", default=None, help="who acknowledges (default: the login name)")
    trace = alerts_sub.add_parser("trace", help="why each target was (or was not) notified, step by step")
    trace.add_argument("alert_id")
    for p in (lst, show, ack, trace):
        with_config(p)
        p.add_argument("--json", action="store_true", help="print JSON")

    box = sub.add_parser("outbox", help="notifications: pending, delivered, dead letters")
    box_sub = box.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    box_list = box_sub.add_parser("list", help="notifications (--state dead: the dead letters)")
    box_list.add_argument("--state", choices=["pending", "delivered", "dead"])
    box_list.add_argument("--json", action="store_true", help="print JSON")
    retry = box_sub.add_parser("retry", help="queue a dead notification again")
    retry.add_argument("notification_id")
    enable = box_sub.add_parser("enable", help="use again a target that said it was gone (HTTP 410)")
    enable.add_argument("target")
    for p in (box_list, retry, enable):
        with_config(p)

    console = sub.add_parser("console", help="serve the officers' web console (without the bot)")
    with_config(console)

    users = sub.add_parser("users", help="console accounts: add, disable, enable, reset, list")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_sub.add_parser("add", help="create an account (the password is asked for)")
    add.add_argument("username")
    add.add_argument("--public-id", required=True, help="shown when the officer speaks, e.g. 'PC 4521'")
    add.add_argument("--force", required=True)
    add.add_argument("--role", choices=["officer", "supervisor", "auditor", "admin"], default="officer")
    add.add_argument("--totp", action="store_true", help="require an authenticator code")
    for name in ("disable", "enable", "reset"):
        p = users_sub.add_parser(name, help=f"{name} an account")
        p.add_argument("username")
        if name == "reset":
            p.add_argument(
                "--totp", choices=["new", "off"], help="also replace (new) or remove the authenticator"
            )
    users_sub.add_parser("list", help="list accounts")
    for p in users_sub.choices.values():
        with_config(p)

    audit_cmd = sub.add_parser("audit", help="the console's hash-chained audit log")
    audit_sub = audit_cmd.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify_cmd = audit_sub.add_parser("verify", help="detect any edited, deleted or reordered entry")
    verify_cmd.add_argument("--anchor", action="append", default=[], help="a head hash recorded earlier")
    audit_sub.add_parser("head", help="print the last entry's hash (record it elsewhere)")
    for p in audit_sub.choices.values():
        with_config(p)

    ev_cmd = sub.add_parser("evidence", help="tamper-evident evidence bundles")
    ev_sub = ev_cmd.add_subparsers(dest="evidence_command", required=True, metavar="ACTION")
    exp = ev_sub.add_parser("export", help="write one alert's evidence bundle")
    exp.add_argument("alert_id")
    exp.add_argument("--out", type=Path, required=True)
    with_config(exp)
    ver = ev_sub.add_parser("verify", help="recompute every hash of a bundle")
    ver.add_argument("bundle", type=Path)
    with_config(ver)  # not needed to verify, accepted for symmetry

    fleet = sub.add_parser("fleet", help="fleet mode: workers, the units they hold, lease ages")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")
    fleet_status = fleet_sub.add_parser("status", help="who runs what, from the lease table")
    fleet_status.add_argument("--json", action="store_true", help="print JSON")
    with_config(fleet_status)

    purge = sub.add_parser("purge", help="purge the evidence of dismissed alerts past the retention period")
    purge.add_argument("--dry-run", action="store_true", help="only list what is due")
    with_config(purge)

    ev = sub.add_parser("eval", help="measure the rules on a labelled corpus (JSON Lines)")
    ev.add_argument("corpus", type=Path)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    with_config(ev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "config-schema":
            print(json.dumps(config_mod.schema(), indent=2))
            return EXIT_OK
        config, text = config_mod.load(args.config)
        log.configure(config.logging.level, config.logging.format)
        if args.command == "check":
            source = str(args.config or "<defaults>")
            resolve(config, text=text, source=source)
            holes = coverage_problems(config, source=source, text=text)
            if holes:
                raise ConfigError(holes)
            print(
                f"{args.config or 'built-in defaults'}: OK "
                f"({len(config.networks)} network(s), "
                f"{sum(len(n.rooms) for n in config.networks)} room(s))"
            )
            return EXIT_OK
        if args.command == "run":
            return _run(config, text, args.config)
        if args.command == "alerts":
            return asyncio.run(_alerts(config, args))
        if args.command == "outbox":
            return asyncio.run(_outbox(config, args))
        if args.command == "fleet":
            return asyncio.run(_fleet_status(config, args.json))
        if args.command == "console":
            return asyncio.run(_console(config))
        if args.command in ("users", "audit", "evidence", "purge"):
            if args.command == "evidence" and args.evidence_command == "verify":
                return _verify_bundle(args.bundle)
            return asyncio.run(_admin(config, args))
        if args.command == "eval":
            return _eval(config, args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        n = len(exc.problems)
        print(f"{n} problem{'s' if n != 1 else ''} found", file=sys.stderr)
        return EXIT_USAGE
    except (CorpusError, PluginError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PresencebotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    raise AssertionError(args.command)  # pragma: no cover - argparse rejects unknown commands


def _run(config: Config, text: str | None, path: Path | None) -> int:
    from presencebot.runtime import Runtime

    resolved = resolve(config, text=text, source=str(path or "<defaults>"))
    for hole in coverage_problems(config, source=str(path or "<defaults>"), text=text):
        structlog.get_logger("presencebot.cli").warning("roster.gap", problem=hole)
    runtime = Runtime(config, open_store(config), adapters=resolved.adapters, rules=resolved.rules)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runtime.stop)
        return await runtime.run()

    return asyncio.run(main())


async def _alerts(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config)
    if args.alerts_command == "list" and not config.store.url and not config.store.path.exists():
        # Listing must not create an empty database where none was.
        print("[]" if args.json else f"no alerts (no alert store yet at {config.store.path})")
        return EXIT_OK
    await store.open()
    try:
        if args.alerts_command == "list":
            state = AlertState(args.state) if args.state else None
            alerts = await store.list(state=state, limit=args.limit)
            if args.json:
                print(json.dumps([a.to_json() for a in alerts], indent=2, ensure_ascii=False))
            else:
                for alert in alerts:
                    print(_summary(alert))
                if not alerts:
                    print("no alerts")
        elif args.alerts_command == "trace":
            lines = await store.read(lambda conn: delivery.traces(conn, args.alert_id))
            if args.json:
                print(json.dumps([{"at": at.isoformat(), "line": line} for at, line in lines], indent=2))
            elif not lines:
                print(f"no trace for {args.alert_id}")
            for at, line in [] if args.json else lines:
                print(f"{at:%Y-%m-%d %H:%M:%S}  {line}")
        else:
            try:
                if args.alerts_command == "show":
                    alert = await store.get(AlertId(args.alert_id))
                else:
                    by = args.by or _login()
                    alert = await store.acknowledge(AlertId(args.alert_id), by)
            except AlertNotFound as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_USAGE
            if args.json:
                print(json.dumps(alert.to_json(), indent=2, ensure_ascii=False))
            else:
                print(_details(alert))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        await store.close()
    return EXIT_OK


async def _outbox(config: Config, args: argparse.Namespace) -> int:
    """The delivery side, for operators: dead letters surface here (and in the logs and to the
    supervisors), and can be queued again once the endpoint is fixed."""
    store = open_store(config)
    await store.open()
    try:
        if args.outbox_command == "list":
            rows = await store.read(lambda conn: delivery.rows(conn, state=args.state))
            disabled = await store.read(delivery.disabled_targets)
            if args.json:
                print(json.dumps([_row_json(r) for r in rows], indent=2))
                return EXIT_OK
            for row in rows:
                print(
                    f"{row.id}  alert {row.alert_id}  {row.kind:<11} -> {row.target:<16} {row.state:<9}"
                    f" {row.attempts} attempt(s)"
                    + (f"  last error: {row.last_error}" if row.last_error else "")
                )
            for target, reason in disabled.items():
                print(f"target {target} is disabled: {reason} (presencebot outbox enable {target})")
            if not rows:
                print("no notifications")
            return EXIT_OK
        if args.outbox_command == "retry":
            now = datetime.now(UTC)
            queued = await store.transaction(lambda conn: delivery.requeue(conn, args.notification_id, now))
            print("queued again" if queued else f"no dead notification {args.notification_id}")
            return EXIT_OK if queued else EXIT_USAGE
        enabled = await store.transaction(lambda conn: delivery.enable_target(conn, args.target))
        print(f"{args.target} enabled again" if enabled else f"{args.target} was not disabled")
        return EXIT_OK
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        await store.close()


async def _fleet_status(config: Config, as_json: bool) -> int:
    import asyncpg

    from presencebot.fleet import ensure_schema, status
    from presencebot.store.postgres import redact

    url = config.fleet.database_url.get_secret_value()
    try:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        # asyncpg's and the OS's messages name the host and database, never the password.
        print(f"error: cannot reach the fleet database {redact(url)}: {exc}", file=sys.stderr)
        if not config.fleet.enabled:
            print("(this configuration has no [fleet] section enabled: pass --config)", file=sys.stderr)
        return EXIT_FAILURE
    try:
        await ensure_schema(pool)
        workers = await status(pool, ttl=config.fleet.lease_ttl_seconds)
    finally:
        await pool.close()
    if as_json:
        print(json.dumps(workers, indent=2, default=str))
        return EXIT_OK
    for worker in workers:
        name = worker.get("worker") or "(nobody: free or expired)"
        alive = "" if worker.get("worker") is None else ("alive" if worker.get("alive") else "SILENT")
        print(f"{name}  {alive}  seen {worker.get('seen_ago', '-')} s ago".rstrip())
        for unit in worker.get("units", []):
            print(
                f"    {unit['unit']:<24} epoch {unit['epoch']:<4} held {unit.get('held_for', '-')} s,"
                f" expires in {unit.get('expires_in', '-')} s"
            )
    if not workers:
        print("no workers have joined")
    return EXIT_OK


async def _console(config: Config) -> int:
    from presencebot.console.server import serve

    store = open_store(config)
    await store.open()
    try:
        await serve(config, store, say=None)
    finally:
        await store.close()
    return EXIT_OK


def _verify_bundle(path: Path) -> int:
    from presencebot import evidence

    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    problems = evidence.verify_bundle(data)
    for problem in problems:
        print(f"TAMPERED: {problem}", file=sys.stderr)
    if problems:
        print(f"{path}: {len(problems)} problem(s): do not rely on this bundle", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{path}: intact (every hash recomputed)")
    return EXIT_OK


async def _admin(config: Config, args: argparse.Namespace) -> int:
    """Accounts, audit, evidence export and purge: each change is itself audited."""
    import getpass

    from presencebot import accounts, audit, evidence, retention

    store = open_store(config)
    await store.open()
    now = datetime.now(UTC)
    actor = f"cli:{_login()}"
    try:
        if args.command == "users":
            if args.users_command == "list":
                for user in await store.read(accounts.list_users):
                    flags = " disabled" if user.disabled else ""
                    print(f"{user.username:<20} {user.role:<10} {user.force:<10} {user.public_id}{flags}")
                return EXIT_OK
            if args.users_command in ("add", "reset"):
                password = getpass.getpass("Password (12 characters or more): ")
            if args.users_command == "add":
                user, uri = await store.transaction(
                    lambda conn: (
                        accounts.add_user(
                            conn,
                            username=args.username,
                            password=password,
                            public_id=args.public_id,
                            force=args.force,
                            role=args.role,
                            totp=args.totp,
                            now=now,
                        ),
                        audit.record(
                            conn,
                            actor=actor,
                            action="user_add",
                            object=args.username,
                            outcome="ok",
                            detail=f"{args.role} of {args.force}",
                            at=now,
                        ),
                    )[0]
                )
                print(f"added {user.username} ({user.role}, {user.force})")
                if uri:
                    print(f"authenticator (shown once): {uri}")
                return EXIT_OK

            def change(conn: sqlite3.Connection) -> accounts.User:
                if args.users_command == "disable":
                    return accounts.disable_user(conn, args.username)
                if args.users_command == "enable":
                    return accounts.enable_user(conn, args.username)
                user = accounts.reset_password(conn, args.username, password, now=now)
                if args.totp:
                    uri = accounts.reset_totp(conn, args.username, enable=args.totp == "new")
                    if uri:
                        print(f"new authenticator (shown once): {uri}")
                return user

            action = f"user_{args.users_command}"
            name = args.username
            await store.transaction(
                lambda conn: (
                    change(conn),
                    audit.record(conn, actor=actor, action=action, object=name, outcome="ok", at=now),
                )
            )
            print(f"{args.users_command}: {args.username} done")
            return EXIT_OK
        if args.command == "audit":
            if args.audit_command == "head":
                print(await store.read(audit.head))
                return EXIT_OK
            problems = await store.read(lambda conn: audit.verify(conn, anchors=args.anchor))
            for problem in problems:
                print(f"TAMPERED: {problem}", file=sys.stderr)
            if problems:
                return EXIT_FAILURE
            print("the audit log is intact")
            return EXIT_OK
        if args.command == "evidence":
            bundle = await store.transaction(
                lambda conn: evidence.export(conn, args.alert_id, exporter=actor, at=now)
            )
            args.out.write_bytes(bundle)
            print(f"wrote {args.out} ({len(bundle)} bytes)")
            return EXIT_OK
        after = timedelta(days=config.console.purge_dismissed_after_days)
        if args.dry_run:
            due = await store.read(lambda conn: retention.due(conn, now, dismissed_after=after))
            print("\n".join(due) if due else "nothing to purge")
            return EXIT_OK
        purged = await store.transaction(
            lambda conn: retention.purge(conn, now, dismissed_after=after, actor=actor)
        )
        print(f"purged the evidence of {len(purged)} alert(s)")
        return EXIT_OK
    except (accounts.AccountError, AlertNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        await store.close()


def _row_json(row: delivery.OutboxRow) -> dict[str, object]:
    return {
        "id": row.id,
        "alert_id": row.alert_id,
        "target": row.target,
        "sink": row.sink,
        "kind": row.kind,
        "state": row.state,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at.isoformat(),
        "last_error": row.last_error,
        "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
    }


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _summary(alert: Alert) -> str:
    return (
        f"{alert.id}  {alert.created_at:%Y-%m-%d %H:%M}  {alert.state:<12}  {alert.severity!s:<8}  "
        f"{alert.category:<8}  {alert.room}  target={alert.target}"
    )


def _details(alert: Alert) -> str:
    lines = [
        _summary(alert),
        f"rule: {alert.rule_id} {alert.rule_version}",
        f"requester: {alert.requester or '-'}",
        f"why: {alert.explanation}",
    ]
    if alert.acknowledged_by:
        lines.append(f"acknowledged by {alert.acknowledged_by} at {alert.acknowledged_at:%Y-%m-%d %H:%M}")
    lines.append("evidence:")
    for e in alert.evidence:
        mark = ">>" if e.flagged else "  "
        lines.append(f" {mark} {e.at:%H:%M:%S} <{e.author}> {e.text!r}")
    for n in alert.notifications:
        lines.append(f"notify {n.target} ({n.sink}): {n.state}, {n.attempts} attempt(s)")
    return "\n".join(lines)


def _eval(config: Config, args: argparse.Namespace) -> int:
    from presencebot.evaluation import evaluate, format_report, load_corpus

    resolved = resolve(config)
    conversations = load_corpus(args.corpus)
    report = asyncio.run(evaluate(conversations, resolved.rules))
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print(format_report(report))
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
