"""The ``evidence:`` section of the configuration: defaults, resolution against the work dir, validation, and
the log key a generated work dir gets from its CA."""

from __future__ import annotations

from pathlib import Path

import pytest

from axis.config import ConfigError, config_from_dict, generate_workdir, load_config
from axis.core.evidence import sign_sth, verify_sth
from axis.core.pki import load_key


def test_defaults_and_resolution(tmp_path: Path) -> None:
    cfg = config_from_dict({}, base=tmp_path, env={})
    assert cfg.evidence.url == f"sqlite:///{tmp_path.resolve()}/evidence.sqlite3"
    assert cfg.evidence.key is None and cfg.evidence.cert is None and cfg.evidence.sth_interval_seconds == 10.0
    cfg = config_from_dict({}, base=tmp_path, env={"AXIS_EVIDENCE_URL": "postgresql://u@h/db"})
    assert cfg.evidence.url == "postgresql://u@h/db"
    cfg = config_from_dict({"evidence": {"url": "sqlite:///log/e.db", "key": "k.pem", "cert": "/abs/c.pem",
                                         "sth_interval_seconds": 2}}, base=tmp_path, env={})
    assert cfg.evidence.url == f"sqlite:///{tmp_path.resolve()}/log/e.db"
    assert cfg.evidence.key == tmp_path.resolve() / "k.pem" and cfg.evidence.cert == Path("/abs/c.pem")
    assert cfg.evidence.sth_interval_seconds == 2.0


@pytest.mark.parametrize("raw", [{"evidence": []}, {"evidence": {"sth_interval_seconds": 0}},
                                 {"evidence": {"sth_interval_seconds": "soon"}}])
def test_bad_evidence_sections(tmp_path: Path, raw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        config_from_dict(raw, base=tmp_path, env={})


def test_a_generated_work_dir_has_the_log_key(tmp_path: Path) -> None:
    path, _ = generate_workdir(tmp_path / "w", [("000.00.00.G22", "VPCP", "s1")], [("s1", "dedicated")])
    cfg = load_config(path)
    ev = cfg.evidence
    assert ev.url == f"sqlite:///{tmp_path.resolve()}/w/evidence.sqlite3"
    assert ev.key == tmp_path.resolve() / "w" / "pki" / "log" / "key.pem"
    assert ev.cert == tmp_path.resolve() / "w" / "pki" / "log" / "cert.pem"
    assert (ev.key.stat().st_mode & 0o077) == 0  # a private key
    assert cfg.pki.ca is not None and cfg.pki.crl is not None
    sth = sign_sth(1, 1000, bytes(32), load_key(ev.key.read_bytes()), ev.cert.read_text())
    verify_sth(sth, [cfg.pki.ca.read_bytes()], cfg.pki.crl.read_bytes())
