"""The reminders section of config.yaml (axis.config.reminders)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from axis.config import ConfigError
from axis.config.reminders import duration, load_reminders, reminders_from_raw

G22 = "000.00.00.G22"


def test_defaults_and_durations(tmp_path: Path) -> None:
    s = reminders_from_raw({}, tmp_path, env={})
    assert (s.policy.after_seconds, s.policy.period_seconds, s.interval_seconds) == (86400, 86400, 300)
    assert s.smtp is None and s.state == tmp_path / "reminders.sqlite3" and not s.contacts
    assert [duration(v, "x") for v in (90, "90s", "30m", "24h", "2d", "1.5h")] == [90, 90, 1800, 86400, 172800,
                                                                                  5400]
    for bad in ("soon", "-1h", True, "1w"):
        with pytest.raises(ConfigError):
            duration(bad, "x")


def test_full_section(tmp_path: Path) -> None:
    (tmp_path / "smtp.pass").write_text("pw\n")
    (tmp_path / "hook.key").write_text("secret\n")
    (tmp_path / "ca.pem").write_text("a CA")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"reminders": {
        "after": "12h", "period": "1d", "interval": "1m", "max_items": 50, "state": "state/rem.db",
        "smtp": {"host": "127.0.0.1", "port": 2525, "username": "axis", "password_file": "smtp.pass",
                 "from": "axis@example.gov.vn", "ca": "ca.pem"},
        "webhook": {"secret_file": "hook.key", "retries": 2, "backoff": "2s"},
        "contacts": {G22: {"email": "vt@g22.example", "webhook": "https://g22.example/hook"}}}}))
    s = load_reminders(config, env={})
    assert s is not None
    assert (s.policy.after_seconds, s.policy.period_seconds, s.policy.max_items) == (43200, 86400, 50)
    assert s.interval_seconds == 60 and s.state == tmp_path / "state/rem.db"
    assert s.smtp is not None and (s.smtp.port, s.smtp.starttls, s.smtp.password, s.smtp.ca) == (
        2525, True, "pw", tmp_path / "ca.pem")
    assert "pw" not in repr(s.smtp) and "secret" not in repr(s.webhook)
    assert s.webhook.secret == b"secret" and s.webhook.retries == 2 and s.webhook.backoff == 2
    assert s.contacts[G22].email == ("vt@g22.example",) and s.contacts[G22].channels() == ("email", "webhook")


def test_no_section_no_reminders(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("servers: []\n")
    assert load_reminders(config) is None


@pytest.mark.parametrize(("section", "message"), [
    ({"after": "later"}, "not a duration"),
    ({"interval": 0}, "interval must be positive"),
    ({"smtp": {"port": 25}}, "missing 'host'"),
    ({"smtp": {"host": "h", "from": "nobody"}}, "not an e-mail address"),
    ({"smtp": {"host": "h", "password_file": "missing"}}, "cannot read"),
    ({"contacts": {G22: {"email": ["x@y.example"]}}}, "no reminders.smtp"),
    ({"contacts": {G22: {"webhook": "https://x.example"}}}, "secret_file"),
    ({"webhook": {"secret_file": "k"}, "contacts": {G22: {"webhook": "ftp://x"}}}, "http"),
    ({"smtp": {"host": "h"}, "contacts": {G22: {"email": ["not-an-address"]}}}, "not an e-mail address"),
    ({"webhook": {"retries": 99}}, "retries"),
    ({"smtp": {"host": "h", "ca": "nowhere.pem"}}, "does not exist"),
    ({"webhook": {"ca": "nowhere.pem"}}, "does not exist"),
])
def test_errors(tmp_path: Path, section: dict[str, object], message: str) -> None:
    (tmp_path / "k").write_text("key")
    with pytest.raises(ConfigError, match=message):
        reminders_from_raw(section, tmp_path, env={})


def test_secrets_from_the_environment(tmp_path: Path) -> None:
    s = reminders_from_raw({"smtp": {"host": "h", "username": "u"}, "contacts": {G22: {"webhook": "http://x"}}},
                           tmp_path, env={"AXIS_SMTP_PASSWORD": "p", "AXIS_WEBHOOK_SECRET": "w"})
    assert s.smtp is not None and s.smtp.password == "p" and s.webhook.secret == b"w"
