"""The one reader of connections.json the commands share (axis.cli._common.read_connections): a missing, unreadable
or non-object file is a usage error (exit 2) that names the file and what the command takes instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from axis.cli._admin import admin_target
from axis.cli._common import EXIT_USAGE, read_connections


def usage(capsys: pytest.CaptureFixture[str], call: object) -> str:
    with pytest.raises(typer.Exit) as exc:
        call()  # type: ignore[operator]
    assert exc.value.exit_code == EXIT_USAGE
    return " ".join(capsys.readouterr().err.split())  # the console wraps long lines


def test_missing_broken_and_foreign_files_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing, broken, listed = tmp_path / "none.json", tmp_path / "broken.json", tmp_path / "list.json"
    broken.write_text("{")
    listed.write_text("[1, 2]")
    assert "--connections FILE" in usage(capsys, lambda: read_connections(missing))
    assert "cannot be read" in usage(capsys, lambda: read_connections(broken))
    assert "is not a connections object" in usage(capsys, lambda: read_connections(listed))
    # the admin commands name their other way in
    assert "--admin URL" in usage(capsys, lambda: admin_target(missing, None, None))
    assert "is not a connections object" in usage(capsys, lambda: admin_target(listed, None, None))


def test_a_connections_object_is_returned_with_where_it_was_read(tmp_path: Path) -> None:
    good = tmp_path / "connections.json"
    good.write_text('{"admin": {"url": "https://127.0.0.1:8700", "token": "t"}, "ca": "ca.pem"}')
    assert read_connections(good) == ({"admin": {"url": "https://127.0.0.1:8700", "token": "t"}, "ca": "ca.pem"},
                                      good)
    assert admin_target(good, None, None) == ("https://127.0.0.1:8700", "t", "ca.pem")
