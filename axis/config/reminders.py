"""The ``reminders`` section of config.yaml: reminders of uncollected documents (:mod:`axis.admin.reminders`).

```yaml
reminders:
  after: 24h                    # a delivery not acked this long is reminded (seconds, or 90s / 30m / 24h / 2d)
  period: 24h                   # at most one reminder per document, channel and period (default: 24h)
  interval: 5m                  # how often the admin app looks (default 5m)
  max_items: 200                # documents listed in one digest (the others are counted)
  state: reminders.sqlite3      # what was sent, so a restart sends nothing twice (default beside config.yaml)
  smtp:                         # e-mail: without it, no e-mail is sent
    host: smtp.example.gov.vn
    port: 587
    starttls: true              # default true: STARTTLS before anything else (refused if the server lacks it)
    ca: pki/ca.cert.pem         # the CA to trust for the SMTP server's certificate (default: the system's)
    username: axis              # optional: AUTH after STARTTLS
    password_file: smtp.pass    # or env AXIS_SMTP_PASSWORD
    from: axis@example.gov.vn
    timeout: 30
  webhook:
    secret_file: webhook.key    # HMAC-SHA256 key of X-Axis-Signature (or env AXIS_WEBHOOK_SECRET)
    retries: 4                  # retries of a failed call, waiting backoff, 2*backoff, … (at most 60 s)
    backoff: 1
    timeout: 10
    ca: pki/ca.cert.pem         # the CA to trust for https:// webhooks (default: the system's)
  contacts:                     # per agency code: e-mail addresses and/or a webhook URL
    000.00.00.G22: {email: [van-thu@g22.gov.vn], webhook: https://g22.example/axis-reminders}
```

Relative paths are resolved against the config file's directory. Secrets are read from files or the
environment, never from config.yaml itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from axis.config.model import ConfigError, _Loader
from axis.core.reminders import Contact, ReminderPolicy

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+")


def duration(value: Any, what: str) -> float:
    """Seconds from a number or ``90s``/``30m``/``24h``/``2d``."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: {value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.fullmatch(str(value))
        if m is None:
            raise ConfigError(f"{what}: {value!r} is not a duration (seconds, or e.g. 30m, 24h, 2d)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds < 0:
        raise ConfigError(f"{what} must not be negative")
    return seconds


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int = 587
    starttls: bool = True
    ca: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "axis@localhost"
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    secret: bytes = field(default=b"", repr=False)
    retries: int = 4
    backoff: float = 1.0
    timeout: float = 10.0
    ca: Path | None = None


@dataclass(frozen=True, slots=True)
class ReminderSettings:
    policy: ReminderPolicy = field(default_factory=ReminderPolicy)
    interval_seconds: float = 300.0
    state: Path = Path("reminders.sqlite3")
    smtp: SmtpSettings | None = None
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    contacts: Mapping[str, Contact] = field(default_factory=lambda: MappingProxyType({}))


def _path(base: Path, value: Any) -> Path | None:
    if value in (None, ""):
        return None
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def _secret(base: Path, raw: Mapping[str, Any], key: str, env_name: str, env: Mapping[str, str], what: str
            ) -> str | None:
    path = _path(base, raw.get(key))
    if path is not None:
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{what}.{key}: cannot read {path}: {exc.strerror}") from None
    return env.get(env_name) or None


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping")
    return value


def reminders_from_raw(raw: Any, base: Path, env: Mapping[str, str] | None = None) -> ReminderSettings:
    """The settings from the ``reminders`` mapping (see the module docstring)."""
    env = os.environ if env is None else env
    r = _mapping(raw, "reminders")
    try:
        policy = ReminderPolicy(duration(r.get("after", 86400), "reminders.after"),
                                duration(r.get("period", 86400), "reminders.period"),
                                int(r.get("max_items", 200)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"reminders: {exc}") from None
    interval = duration(r.get("interval", 300), "reminders.interval")
    if interval <= 0:
        raise ConfigError("reminders.interval must be positive")
    smtp = None
    if r.get("smtp") is not None:
        s = _mapping(r["smtp"], "reminders.smtp")
        if not s.get("host"):
            raise ConfigError("reminders.smtp: missing 'host'")
        sender = str(s.get("from") or "axis@localhost")
        if not _EMAIL.fullmatch(sender):
            raise ConfigError(f"reminders.smtp.from: {sender!r} is not an e-mail address")
        try:
            smtp = SmtpSettings(host=str(s["host"]), port=int(s.get("port", 587)),
                                starttls=bool(s.get("starttls", True)), ca=_path(base, s.get("ca")),
                                username=str(s["username"]) if s.get("username") else None,
                                password=_secret(base, s, "password_file", "AXIS_SMTP_PASSWORD", env, "reminders.smtp"),
                                sender=sender, timeout=duration(s.get("timeout", 30), "reminders.smtp.timeout"))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"reminders.smtp: {exc}") from None
    for what, ca in (("reminders.smtp.ca", smtp.ca if smtp else None), ("reminders.webhook.ca",
                                                                        _path(base, _mapping(r.get("webhook"),
                                                                                             "reminders.webhook")
                                                                              .get("ca")))):
        if ca is not None and not ca.is_file():
            raise ConfigError(f"{what}: {ca} does not exist")
    w = _mapping(r.get("webhook"), "reminders.webhook")
    secret = _secret(base, w, "secret_file", "AXIS_WEBHOOK_SECRET", env, "reminders.webhook")
    try:
        webhook = WebhookSettings(secret=(secret or "").encode(), retries=int(w.get("retries", 4)),
                                  backoff=duration(w.get("backoff", 1), "reminders.webhook.backoff"),
                                  timeout=duration(w.get("timeout", 10), "reminders.webhook.timeout"),
                                  ca=_path(base, w.get("ca")))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"reminders.webhook: {exc}") from None
    if not 0 <= webhook.retries <= 20:
        raise ConfigError("reminders.webhook.retries must be between 0 and 20")
    contacts: dict[str, Contact] = {}
    for code, entry in _mapping(r.get("contacts"), "reminders.contacts").items():
        e = _mapping(entry, f"reminders.contacts.{code}")
        emails = e.get("email") or ()
        emails = (emails,) if isinstance(emails, str) else tuple(str(x) for x in emails)
        for address in emails:
            if not _EMAIL.fullmatch(address):
                raise ConfigError(f"reminders.contacts.{code}: {address!r} is not an e-mail address")
        hook = str(e["webhook"]) if e.get("webhook") else None
        if hook is not None and not hook.startswith(("https://", "http://")):
            raise ConfigError(f"reminders.contacts.{code}: webhook {hook!r} is not an http(s):// URL")
        if emails and smtp is None:
            raise ConfigError(f"reminders.contacts.{code}: e-mail addresses but no reminders.smtp server")
        if hook is not None and not webhook.secret:
            raise ConfigError(f"reminders.contacts.{code}: a webhook but no reminders.webhook.secret_file "
                              "(or AXIS_WEBHOOK_SECRET) to sign it with")
        contacts[str(code)] = Contact(emails, hook)
    state = _path(base, r.get("state")) or base / "reminders.sqlite3"
    return ReminderSettings(policy, interval, state, smtp, webhook, MappingProxyType(contacts))


def load_reminders(config_path: Path | str, env: Mapping[str, str] | None = None) -> ReminderSettings | None:
    """The ``reminders`` section of a configuration file (None when it has none: no reminders are sent)."""
    path = Path(config_path).expanduser().resolve()
    try:
        raw = yaml.load(path.read_bytes(), Loader=_Loader)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(raw, Mapping) or raw.get("reminders") is None:
        return None
    return reminders_from_raw(raw["reminders"], path.parent, env)
