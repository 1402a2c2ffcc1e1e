"""`axis simulate` and `axis demo`: national traffic through a running axis, and the one-command demo."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import typer

from axis.cli._common import EXIT_OK, EXIT_REFUSED, console, err_console, print_json, safe, usage_error
from axis.sim import connections as conn_mod
from axis.sim import scenario as scn
from axis.sim.build import SigningPool
from axis.sim.driver import Options, signing_keys, simulate
from axis.sim.report import Report, Reporter
from axis.sim.vxp import PROTOCOLS

QUICK_DOCUMENTS = 500


def _scenario(name: str, documents: int | None, agencies: int | None) -> scn.Scenario:
    try:
        sc = scn.load(name)
        if documents is not None or agencies is not None:
            sc = scn.scale(sc, documents=documents, agencies=agencies)
    except scn.ScenarioError as exc:
        usage_error(f"scenario: {exc}")
    return sc


def _run(
    sc: scn.Scenario,
    seed: int,
    conns: conn_mod.Connections,
    opts: Options,
    quiet: bool,
    signers: SigningPool | None = None,
) -> Report:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional on some platforms
        pass
    with Reporter(quiet=quiet) as rep:
        return asyncio.run(simulate(sc, seed, conns, opts, rep, signers))


def _finish(report: Report, as_json: bool) -> None:
    report.render(err_console if as_json else console)
    if as_json:
        print_json(report.as_json())


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def register(app: typer.Typer) -> None:
    """Add `simulate` and `demo` to the root app."""

    @app.command("simulate")
    def simulate_cmd(
        scenario: str = typer.Option("seed-2019", "--scenario", help="bundled scenario name or a YAML file"),
        documents: int | None = typer.Option(None, "--documents", min=1, help="scale to N good documents"),
        agencies: int | None = typer.Option(None, "--agencies", min=2, help="scale the scenario's directory"),
        rate: float | None = typer.Option(None, "--rate", min=0.1, help="target documents/s (default: flat out)"),
        seed: int = typer.Option(2019, "--seed", help="seed of the traffic plan (same seed, same traffic)"),
        as_json: bool = typer.Option(False, "--json", help="print the final report object on stdout"),
        connections: Path = typer.Option(conn_mod.DEFAULT_PATH, "--connections", help="the running axis's file"),
        concurrency: int = typer.Option(48, "--concurrency", min=1, help="requests in flight"),
        workers: int | None = typer.Option(
            None, "--workers", min=0, help="signing processes (default: one per core; 0: in-process)"
        ),
        unsigned: bool = typer.Option(False, "--unsigned", help="let the endpoint servers sign (they hold keys)"),
        protocol: str = typer.Option("v1", "--protocol", help="v1: every agency uses the REST API; vxp: every agency "
                                     "submits and sends statuses through the VPCP SDK's /vxp; mixed: every other one"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress display"),
    ) -> None:
        """Drive simulated agency traffic through a running axis, then compare the axis's counters, the
        simulator's tally and the inboxes (exit 1 unless all agree)."""
        sc = _scenario(scenario, documents, agencies)
        try:
            conns = conn_mod.load(connections)
        except conn_mod.ConnectionsError as exc:
            usage_error(str(exc))
        if protocol not in PROTOCOLS:
            usage_error(f"--protocol must be one of {', '.join(PROTOCOLS)}")
        opts = Options(rate=rate, concurrency=concurrency, workers=workers, sign=not unsigned, protocol=protocol)
        report = _run(sc, seed, conns, opts, quiet)
        _finish(report, as_json)
        raise typer.Exit(EXIT_OK if report.agree else EXIT_REFUSED)

    @app.command("demo")
    def demo_cmd(
        quick: bool = typer.Option(False, "--quick", help=f"a small run: {QUICK_DOCUMENTS} documents, same mix"),
        exit_after: bool = typer.Option(False, "--exit", help="shut down after the report"),
        as_json: bool = typer.Option(False, "--json", help="print the final report object on stdout"),
        work_dir: Path = typer.Option(Path("axis-work"), "--work-dir", help="PKI, config, stores, connections"),
        scenario: str = typer.Option("seed-2019", "--scenario", help="bundled scenario name or a YAML file"),
        documents: int | None = typer.Option(None, "--documents", min=1, help="scale to N good documents"),
        agencies: int | None = typer.Option(None, "--agencies", min=2, help="scale the scenario's directory"),
        seed: int = typer.Option(2019, "--seed", help="seed of the traffic plan"),
        base_port: int = typer.Option(8701, "--base-port", help="first endpoint port (admin: one below)"),
        workers: int | None = typer.Option(
            None, "--workers", min=0, help="signing processes (default: one per core; 0: in-process)"
        ),
        protocol: str = typer.Option("v1", "--protocol", help="v1: every agency uses the REST API; vxp: every agency "
                                     "submits and sends statuses through the VPCP SDK's /vxp; mixed: every other one"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress display"),
    ) -> None:
        """The main job: PKI and configuration for seed-2019, the axis up, the scenario replayed in full
        (--quick: a small run), the traffic report, then the dashboard until Ctrl-C (--exit: stop)."""
        from axis.sim import demo

        if protocol not in PROTOCOLS:
            usage_error(f"--protocol must be one of {', '.join(PROTOCOLS)}")
        sc = _scenario(scenario, QUICK_DOCUMENTS if quick and documents is None else documents, agencies)
        work_dir = work_dir.expanduser().resolve()
        log = err_console
        try:
            log.print(f"[bold]axis demo[/]: {safe(sc.name)} — {len(sc.agencies)} agencies "
                      f"({sc.dedicated} dedicated, {sc.shared} shared), {sc.documents:,} documents → "
                      f"{sc.deliveries:,} deliveries; work dir {safe(work_dir)}")  # fmt: skip
            log.print("generating PKI (one EC P-256 key per agency) and configuration…")
            config, conns_raw = demo.prepare(sc, work_dir, base_port=base_port)
        except (demo.DemoError, ValueError) as exc:
            usage_error(str(exc))
        from axis.ops.progress import ProgressLine

        progress = ProgressLine()
        axis = demo.AxisProcess(config, work_dir, progress=None if quiet else progress)
        previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the demo cleanly, like Ctrl-C
        signers: SigningPool | None = None
        try:
            n = (os.cpu_count() or 1) if workers is None else workers
            if n > 0:  # the signing processes start (interpreters, keys) while the axis boots
                keys = signing_keys(conn_mod.from_dict(conns_raw).agencies)
                signers = SigningPool(keys, workers=n)
            log.print("starting the axis (router, endpoint servers, admin)…")
            try:
                try:
                    conns = axis.start(conns_raw)
                finally:
                    progress.done()
            except demo.DemoError as exc:
                log.print(f"[bold red]error:[/] {safe(exc, lines=True)}")
                raise typer.Exit(EXIT_REFUSED) from None
            log.print(f"axis up; connections: {safe(work_dir / 'connections.json')}")
            if conns.ca and conns.admin_url.startswith("https://"):
                log.print(f"HTTPS everywhere: certificates from the axis CA {safe(conns.ca)} "
                          f"(curl --cacert {safe(conns.ca)} {safe(conns.admin_url)}/healthz; a browser needs it "
                          "imported to open the dashboard without a warning)")
            report = _run(sc, seed, conns, Options(workers=workers, protocol=protocol), quiet, signers)
            if signers is not None:
                signers.close()
                signers = None
            _finish(report, as_json)
            code = EXIT_OK if report.agree else EXIT_REFUSED
            if not exit_after:
                token = f"; sign in with the admin token {conns.admin_token}" if conns.admin_token else ""
                log.print(f"[bold]the dashboard stays up[/] at {safe(f'{conns.admin_url}/{token}')} — Ctrl-C to stop")
                try:
                    while axis.alive():
                        time.sleep(0.5)
                    log.print(f"[bold red]a process of the axis exited:[/] {safe(axis.failures(), lines=True)}")
                    code = EXIT_REFUSED
                except KeyboardInterrupt:
                    pass
        except KeyboardInterrupt:
            code = 130
        finally:
            if signers is not None:
                signers.close()
            log.print("stopping the axis…")
            axis.stop()
            signal.signal(signal.SIGTERM, previous)
        raise typer.Exit(code)
