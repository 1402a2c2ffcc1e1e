"""axis.config.move_agency: the configuration with one agency on another server."""

from __future__ import annotations

from pathlib import Path

import pytest

from axis.config import ConfigError, generate_workdir, load_config, move_agency

G01, G03 = "000.00.00.G01", "000.00.00.G03"


def test_move_to_a_new_dedicated_server(tmp_path: Path) -> None:
    path, _ = generate_workdir(tmp_path, [(G01, "A", "sh"), (G03, "B", "sh")], [("sh", "shared")], base_port=9001)
    cfg = move_agency(path, G03, "d-g03")
    assert cfg == load_config(path)  # written
    new = cfg.server("d-g03")
    assert (new.kind, new.port, new.keys) == ("dedicated", 9002, (G03,))
    assert cfg.server("sh").keys == (G01,)
    assert cfg.directory.server_of(G03).id == "d-g03"  # type: ignore[union-attr]
    assert cfg.directory.agency(G03).moved_from == ("sh",)  # its old server's in-flight status 01s stay authentic
    assert cfg.agency(G03).cert is not None and cfg.agency(G03).cert.is_file()  # type: ignore[union-attr]
    with pytest.raises(ConfigError):  # a dedicated server takes one agency
        move_agency(path, G01, "d-g03")
    assert load_config(path).directory.server_of(G01).id == "sh"  # type: ignore[union-attr]  # not written
    with pytest.raises(ConfigError):
        move_agency(path, "000.00.00.G99", "d-g03")
