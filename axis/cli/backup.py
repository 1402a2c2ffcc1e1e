"""`axis backup` and `axis restore` (contract section 7): an encrypted, consistent snapshot of a work directory
and its restore (:mod:`axis.ops.backup`).

The passphrase comes from ``--passphrase-file FILE`` (its first line) or ``AXIS_BACKUP_PASSPHRASE``. Exit status:
0 done; 1 refused — a wrong passphrase (reason ``UNAUTHORIZED``) or an altered or damaged backup
(``SIGNATURE_INVALID``: its authentication does not match); 2 usage errors (a missing work directory, an existing
output file, a non-empty target, no passphrase).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from axis.cli._common import EXIT_OK, console, fail, print_json, safe, usage_error
from axis.core.reasons import Reason, Refusal

PASSPHRASE_HELP = "a file whose first line is the passphrase (default: env AXIS_BACKUP_PASSPHRASE)"


def _refuse(exc: Any, as_json: bool) -> None:
    if exc.kind == "usage":
        usage_error(exc.detail)
    reason = Reason.UNAUTHORIZED if exc.kind == "wrong_passphrase" else Reason.SIGNATURE_INVALID
    fail(Refusal(reason, exc.detail), as_json=as_json, extra={"ok": False})


def _summary(manifest: dict[str, Any]) -> str:
    s = manifest.get("summary") or {}
    parts = [f"{len(manifest['files'])} files", f"{len(manifest['databases'])} databases"]
    if "log_leaves" in s:
        parts.append(f"evidence log {s['log_leaves']} leaves (tree head at {s.get('sth_tree_size')})")
    if "axis_accepted" in s:
        parts.append(f"statistics {s['axis_accepted']} sent / {s.get('axis_delivered', 0)} received / "
                     f"{s.get('axis_refused', 0)} refused")
    parts.append(f"{s.get('inbox_rows', 0)} inbox rows")
    return ", ".join(parts)


def register(app: typer.Typer) -> None:
    """Add ``backup`` and ``restore`` to the root app."""

    @app.command("backup")
    def backup(
        work_dir: Path = typer.Option(..., "--work-dir", help="the axis work directory (with config.yaml)"),
        output: Path = typer.Option(..., "-o", "--output", help="the backup file to write (must not exist)"),
        config: Path | None = typer.Option(None, "--config", help="config file (default: WORK_DIR/config.yaml)"),
        passphrase_file: Path | None = typer.Option(None, "--passphrase-file", help=PASSPHRASE_HELP),
        as_json: bool = typer.Option(False, "--json", help="print the manifest's summary as JSON"),
    ) -> None:
        """Back up a work directory, running or not: the CA and every key, the configuration, the statistics, the
        inbox stores and the evidence log (SQLite through its online backup API, PostgreSQL through pg_dump), in
        one file encrypted with a passphrase."""
        from axis.ops.backup import BackupError, read_passphrase, take_backup

        try:
            manifest = take_backup(work_dir, output, read_passphrase(passphrase_file), config_path=config)
        except BackupError as exc:
            _refuse(exc, as_json)
            return
        if as_json:
            print_json({"ok": True, "file": str(output.expanduser().resolve()), "summary": manifest["summary"],
                        "files": len(manifest["files"]), "databases": len(manifest["databases"])})
        else:
            console.print(f"wrote {safe(output)}: {safe(_summary(manifest))}")
        raise typer.Exit(EXIT_OK)

    @app.command("restore")
    def restore(
        backup_file: Path = typer.Argument(..., metavar="FILE", help="a file written by axis backup"),
        work_dir: Path = typer.Option(..., "--work-dir", help="the directory to restore into (new or empty)"),
        passphrase_file: Path | None = typer.Option(None, "--passphrase-file", help=PASSPHRASE_HELP),
        overwrite_databases: bool = typer.Option(False, "--overwrite-databases", help="restore PostgreSQL dumps "
                                                 "into the databases the configuration names, replacing them"),
        as_json: bool = typer.Option(False, "--json", help="print the restored summary as JSON"),
    ) -> None:
        """Restore a backup into a new work directory, after checking all of it (passphrase, every byte, every
        file against the manifest, every SQLite snapshot); then `axis up --config DIR/config.yaml --work-dir DIR`."""
        from axis.ops.backup import BackupError, read_passphrase, restore_backup

        try:
            manifest = restore_backup(backup_file, work_dir, read_passphrase(passphrase_file),
                                      overwrite_databases=overwrite_databases)
        except BackupError as exc:
            _refuse(exc, as_json)
            return
        target = work_dir.expanduser().resolve()
        if as_json:
            print_json({"ok": True, "work_dir": str(target), "summary": manifest["summary"],
                        "files": len(manifest["files"]), "databases": len(manifest["databases"])})
        else:
            console.print(f"restored into {safe(target)}: {safe(_summary(manifest))}")
            console.print(f"start it: axis up --config {safe(target / 'config.yaml')} --work-dir {safe(target)}")
        raise typer.Exit(EXIT_OK)
