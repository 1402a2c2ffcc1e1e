"""Top-level `axis` commands of the run group: up, send, inbox (and the process entry points router, log-writer,
serve, admin, init used by `axis up` and docker-compose)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from axis.cli._common import (
    EXIT_REFUSED,
    announce_plaintext,
    connection_tls,
    console,
    err_console,
    fail,
    print_json,
    safe,
    tls_problem,
    usage_error,
)
from axis.core.reasons import Reason, Refusal

if TYPE_CHECKING:
    from axis.config import Config


def _config(path: Path) -> Config:
    from axis.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        usage_error(str(exc))


def _tls_on(path: Path) -> bool:
    from axis.config.loader import tls_enabled

    return tls_enabled(path)


# -- TLS options of the commands that talk to an endpoint server ------------------------------------------------
CA_OPTION = typer.Option(None, "--ca", envvar="AXIS_CA", help="the axis CA to trust (default: connections.json's ca "
                         "when the endpoint is one of its servers)")
CERT_OPTION = typer.Option(None, "--cert", help="your agency's TLS client certificate, for servers with "
                           "client_auth (default: connections.json's tls_cert for your token)")
KEY_OPTION = typer.Option(None, "--key", help="the key of --cert (default: connections.json's tls_key)")
CONNECTIONS_OPTION = typer.Option(None, "--connections", metavar="FILE", help="connections.json to take the "
                                  "TLS defaults from (default ./axis-work/connections.json, when present)")


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def up(
    config: Path | None = typer.Option(None, "--config", help="axis config file (default: a generated demo)"),
    work_dir: Path = typer.Option(Path("axis-work"), "--work-dir", help="where logs, stores and connections.json go"),
    routers: int | None = typer.Option(None, "--routers", help="router processes (default: config 'routers')"),
    broker_wait: float = typer.Option(300.0, "--broker-wait", min=0, metavar="SECONDS",
                                      help="how long to wait for RabbitMQ (and each process for its first broker "
                                           "connection) before giving up"),
) -> None:
    """Run router(s), all endpoint servers of the config and the admin dashboard against RabbitMQ."""
    from axis.ops.progress import ProgressLine
    from axis.ops.up import StartError, prepare_demo, start

    work_dir = work_dir.expanduser().resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    known = None
    try:
        if config is None:
            config, known = prepare_demo(work_dir)
            announce_plaintext(_tls_on(config))  # the first line, before anything else
            console.print(f"demo configuration: {safe(config)}")
        else:
            announce_plaintext(_tls_on(config))
            conn = work_dir / "connections.json"
            if conn.is_file():
                import orjson

                known = orjson.loads(conn.read_bytes())
        progress = ProgressLine()
        try:
            run = start(config.resolve(), work_dir, known, routers=routers, broker_wait=broker_wait,
                        progress=progress)
        finally:
            progress.done()
    except StartError as exc:
        err_console.print(f"[bold red]axis up failed:[/] {safe(exc, lines=True)}")
        raise typer.Exit(EXIT_REFUSED) from None
    import orjson

    assert run.connections_path is not None  # written by start()
    admin_token = orjson.loads(run.connections_path.read_bytes())["admin"]["token"]
    console.print(f"[green]axis is up[/] — {len(run.config.servers)} servers, {len(run.config.agencies)} agencies")
    console.print(f"dashboard: {safe(run.config.admin.url)}/  (sign in with the admin token {safe(admin_token)})")
    console.print(f"connections: {safe(run.connections_path)}")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        run.wait()
        err_console.print("[bold red]a process exited:[/] " + safe("; ".join(run.failed())))
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        run.stop()


def send(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="edXML document (signed, or unsigned when "
                                "the server holds your key)"),
    endpoint: str = typer.Option(..., "--endpoint", help="endpoint server URL"),
    token: str = typer.Option(..., "--token", help="your agency's token"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ca: Path | None = CA_OPTION,
    cert: Path | None = CERT_OPTION,
    key: Path | None = KEY_OPTION,
    connections: Path | None = CONNECTIONS_OPTION,
) -> None:
    """Submit a document through an endpoint server."""
    from axis.client import AxisError, Client

    tls = connection_tls(endpoint, token=token, ca=ca, cert=cert, key=key, connections=connections)
    try:
        with Client(endpoint, token, ca=tls["ca"], cert=tls["cert"], key=tls["key"]) as c:
            result = c.submit(file.read_bytes())
    except AxisError as exc:
        _client_fail(exc, as_json)
    except Exception as exc:  # connection refused, timeouts, an untrusted certificate
        usage_error(f"cannot reach {endpoint}: {tls_problem(exc)}")
    if as_json:
        print_json({"ok": True, "reason": None, "detail": "", **result})
    else:
        recipients = result.get("recipients")
        recipients = ", ".join(map(str, recipients)) if isinstance(recipients, list) else recipients
        console.print(f"[green]accepted[/] {safe(result.get('document_id'))} → {safe(recipients)} "
                      f"(id {safe(result.get('id'))})")


def inbox(
    endpoint: str = typer.Option(..., "--endpoint", help="endpoint server URL"),
    token: str = typer.Option(..., "--token", help="your agency's token"),
    unread: bool = typer.Option(False, "--unread", help="only documents not acked yet"),
    limit: int = typer.Option(100, "--limit"),
    offset: int = typer.Option(0, "--offset"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ca: Path | None = CA_OPTION,
    cert: Path | None = CERT_OPTION,
    key: Path | None = KEY_OPTION,
    connections: Path | None = CONNECTIONS_OPTION,
) -> None:
    """List documents received by your agency."""
    from axis.client import AxisError, Client

    tls = connection_tls(endpoint, token=token, ca=ca, cert=cert, key=key, connections=connections)
    try:
        with Client(endpoint, token, ca=tls["ca"], cert=tls["cert"], key=tls["key"]) as c:
            items = c.inbox(unread=unread, limit=limit, offset=offset)
    except AxisError as exc:
        _client_fail(exc, as_json)
    except Exception as exc:
        usage_error(f"cannot reach {endpoint}: {tls_problem(exc)}")
    if as_json:
        print_json({"ok": True, "reason": None, "detail": "", "items": items})
        return
    table = Table(title=f"inbox ({len(items)})")
    for col in ("id", "received", "from", "kind", "document id", "subject", "acked"):
        table.add_column(col)
    for i in items:  # every field is the server's answer, most of them the sender's document: all through safe()
        table.add_row(safe(str(i.get("id", ""))[:8]), *(safe(i.get(k)) for k in
                      ("received_at", "from", "kind", "document_id", "subject")), "yes" if i.get("acked") else "")
    console.print(table)


def _client_fail(exc: Exception, as_json: bool) -> None:
    from axis.client import AxisError

    assert isinstance(exc, AxisError)
    try:
        reason = Reason(exc.reason) if exc.reason else None
    except ValueError:
        reason = None
    if reason is None:
        usage_error(f"HTTP {exc.status}: {exc.detail}")
    fail(Refusal(reason, exc.detail), as_json=as_json, extra={"status": exc.status})


# -- process entry points (used by `axis up` and docker-compose) -----------------------------------------------


def router(config: Path = typer.Option(..., "--config")) -> None:
    """Run one router process (competing consumer of axis.submissions)."""
    from axis.router.service import run_router

    _logging()
    cfg = _config(config)
    _run_until_signal(run_router(cfg))


def log_writer(config: Path = typer.Option(..., "--config")) -> None:
    """Run the evidence log's writer (the one consumer of axis.evidence; signs the tree heads)."""
    from axis.evidence.writer import run_log_writer

    _logging()
    cfg = _config(config)
    _run_until_signal(run_log_writer(cfg))


def serve(
    config: Path = typer.Option(..., "--config"),
    server: list[str] = typer.Option(..., "--server", help="server id (repeat to host several)"),
) -> None:
    """Run endpoint server(s) of the config in this process. Several servers share one broker connection when `axis
    up` provisioned a host user for exactly that set (endpoints.link); otherwise each connects as its own user."""
    from axis.ops.entrypoints import endpoints_entry

    serve_hosts = endpoints_entry("serve")

    announce_plaintext(_tls_on(config))
    _logging()
    cfg = _config(config)
    for sid in server:
        if cfg.directory.server(sid) is None:
            usage_error(f"no server {sid!r} in {config}")
    _asyncio_run(serve_hosts(cfg, server))


def admin(config: Path = typer.Option(..., "--config")) -> None:
    """Run the admin app (dashboard, /admin/stats) — over HTTPS unless the configuration says tls: off."""
    announce_plaintext(_tls_on(config))
    _logging()
    cfg = _config(config)
    import dataclasses
    from typing import Any

    import uvicorn

    from axis.admin.app import create_app
    from axis.broker.users import ADMIN_USER, component_url

    # the admin app reads queue depths through the management API as axis-admin (monitoring, changes nothing)
    cfg = dataclasses.replace(cfg, amqp_url=component_url(cfg, ADMIN_USER))

    tls: dict[str, Any] = {}
    if cfg.tls.enabled:
        from axis.core.tlsconfig import server_context

        problem = cfg.tls.missing()
        if problem is not None:
            usage_error(problem)
        assert cfg.tls.cert is not None and cfg.tls.key is not None
        context = server_context(cfg.tls.cert, cfg.tls.key)
        tls["ssl_context_factory"] = lambda _config, _default: context
    # proxy_headers=False: the failed-login limit is per peer address; X-Forwarded-For must not choose it
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host=cfg.admin.host, port=cfg.admin.port,
                                           log_level="warning", proxy_headers=False, **tls))

    async def rotate(new: Any) -> None:
        """SIGHUP (axis.config.reload; ``axis up`` sends one when the files change): the server certificate as the
        files now are, for new connections."""
        if "ssl_context_factory" in tls and new.tls.enabled and new.tls.missing() is None:
            from axis.core.tlsconfig import reload_server_contexts

            reload_server_contexts([context], new.tls.cert, new.tls.key)

    async def main() -> None:
        from axis.config.reload import install_sighup

        install_sighup(cfg, rotate, "admin")
        await server.serve()

    _asyncio_run(main())


def init(
    work_dir: Path = typer.Option(Path("axis-work"), "--work-dir"),
    amqp_url: str | None = typer.Option(None, "--amqp-url"),
    db_url: str | None = typer.Option(None, "--db-url", help="PostgreSQL URL for stats, inboxes and the evidence log"),
    host: str = typer.Option("127.0.0.1", "--host", help="host name the servers are reached at"),
    server_name: list[str] = typer.Option([], "--server-name", help="another name clients reach the servers at "
                                          "(repeat): added to the TLS server certificate"),
    broker_auth: str = typer.Option("users", "--broker-auth",
                                    help="users: one least-privilege broker user per component, provisioned now "
                                         "(needs the management API); shared: everyone uses the AMQP URL (dev)"),
) -> None:
    """Generate the demo configuration (PKI, tokens, config.yaml, connections.json) without running it; with
    per-component broker users, also declare the topology and create the users (as `axis up` does)."""
    from axis.config import connections_for, generate_workdir, load_config, write_connections
    from axis.ops.up import DEMO_AGENCIES, DEMO_SERVERS

    work_dir = work_dir.expanduser().resolve()
    if (work_dir / "config.yaml").exists():
        console.print(f"{safe(work_dir / 'config.yaml')} exists; keeping it")
        return
    if broker_auth not in ("users", "shared"):
        usage_error("--broker-auth must be 'users' or 'shared'")
    path, conn = generate_workdir(work_dir, DEMO_AGENCIES, DEMO_SERVERS, amqp_url=amqp_url, stats_url=db_url,
                                  inbox_url=db_url, evidence_url=db_url, host=host, broker_auth=broker_auth,
                                  server_names=server_name)
    cfg = load_config(path)
    write_connections(work_dir, connections_for(cfg, conn))
    if cfg.broker.per_component:
        from axis.broker.setup import prepare_broker_sync
        from axis.broker.topology import TopologyError
        from axis.broker.users import BrokerAuthError

        try:
            prepare_broker_sync(cfg, timeout=120)
        except (BrokerAuthError, TopologyError) as exc:
            usage_error(f"preparing RabbitMQ: {exc}")
        console.print(f"broker users provisioned; passwords in {safe(cfg.broker.users_file)}")
    console.print(f"wrote {safe(path)} and {safe(work_dir / 'connections.json')}")


def _run_until_signal(coro: Coroutine[object, None, None]) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    _asyncio_run(main())


def _asyncio_run(coro: Coroutine[object, None, None]) -> None:
    """``asyncio.run`` on uvloop when it is installed — a cheaper event loop and socket I/O for the long-running
    router and endpoint-host processes — else on the standard loop. A blob store that cannot be reached as the
    process starts (``blobs.url``'s database down) ends it with one line and status 1, not a traceback."""
    import gc

    from axis.blobs import BlobStoreUnavailable

    gc.freeze()  # what start-up allocated (modules, schemas, configuration) is never scanned again
    gc.set_threshold(50_000, 20, 20)  # per message, thousands of short-lived objects: collect less often
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is optional on some platforms
            asyncio.run(coro)
            return
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
    except BlobStoreUnavailable as exc:
        err_console.print(f"[bold red]error:[/] {safe(str(exc))}")
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("up")(up)
    app.command("send")(send)
    app.command("inbox")(inbox)
    app.command("router", hidden=True)(router)
    app.command("log-writer", hidden=True)(log_writer)
    app.command("serve", hidden=True)(serve)
    app.command("admin", hidden=True)(admin)
    app.command("init", hidden=True)(init)
