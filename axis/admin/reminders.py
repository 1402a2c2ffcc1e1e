"""The reminder scheduler: each agency gets a digest of the documents waiting in its inbox longer than
``reminders.after`` — by e-mail over SMTP (STARTTLS) and by a signed webhook — at most once per document, channel
and period, across restarts.

Every ``reminders.interval`` the admin app reads the deliveries not acked (:class:`axis.admin.uncollected.
UncollectedSource`), plans the digests (:func:`axis.core.reminders.plan`: who gets what, minus what the sent log
already holds) and sends them. The sent log is a small SQLite file (``reminders.state``, default
``reminders.sqlite3`` beside config.yaml): a digest's keys are committed as soon as it was delivered (the SMTP
server accepted the message; the webhook answered 2xx), so a restart never reminds twice; a digest that failed is
tried again at the next round (webhooks: first retried within the round with back-off, ``reminders.webhook.
retries`` times). A crash between a delivery and its commit can repeat that one digest — never lose one.

Webhook requests: ``POST`` the JSON of :func:`axis.core.reminders.webhook_body` with ``X-Axis-Event:
axis.uncollected``, ``X-Axis-Timestamp: <epoch seconds>`` and ``X-Axis-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>.<body>" keyed by reminders.webhook.secret>`` (:func:`axis.core.reminders.verify_webhook` is the
receiver's check). Routes: ``GET /admin/reminders`` (settings without secrets, the last round),
``POST /admin/reminders/run`` (one round now). Counters: ``axis_reminders_sent_total{channel}``,
``axis_reminders_failed_total{channel}``, ``axis_reminded_documents_total{channel}``. Without a ``reminders``
section nothing is sent, but the uncollected gauges (:mod:`axis.admin.uncollected`) are still refreshed every
:data:`OBSERVE_SECONDS` for deliveries older than 24 h.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import sqlite3
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from axis.admin.background import stop_task
from axis.admin.uncollected import UncollectedApi, UncollectedSource, file_stamp
from axis.config import ConfigError
from axis.config.reminders import ReminderSettings, SmtpSettings, WebhookSettings, load_reminders
from axis.core.reminders import (
    CHANNELS,
    EVENT,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Digest,
    ReminderPolicy,
    due_keys,
    email_message,
    iso,
    plan,
    retry_delays,
    sign_webhook,
    webhook_body,
)

log = logging.getLogger("axis.admin.reminders")
#: how often the uncollected gauges are refreshed when no reminders are configured
OBSERVE_SECONDS = 300.0


class SentLog:
    """The reminders sent (their keys), in SQLite; calls run on a worker thread, one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS axis_reminder_sent (key TEXT PRIMARY KEY, agency TEXT NOT NULL, "
                       "channel TEXT NOT NULL, sent_at REAL NOT NULL)")
            self._db = db
        return self._db

    async def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        async with self._lock:
            return await asyncio.to_thread(lambda: fn(self._connect()))

    async def among(self, keys: Iterable[str]) -> set[str]:
        """The keys of ``keys`` already sent."""
        wanted = list(dict.fromkeys(keys))

        def query(db: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for i in range(0, len(wanted), 500):
                chunk = wanted[i:i + 500]
                marks = ",".join("?" * len(chunk))
                found.update(k for (k,) in db.execute(f"SELECT key FROM axis_reminder_sent WHERE key IN ({marks})",
                                                      chunk))
            return found

        return set() if not wanted else await self._run(query)

    async def record(self, digest: Digest, at: float) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR IGNORE INTO axis_reminder_sent (key, agency, channel, sent_at) "
                           "VALUES (?, ?, ?, ?)", [(k, digest.agency, digest.channel, at) for k in digest.keys])
            db.execute("COMMIT")

        await self._run(write)

    async def count(self) -> int:
        return int(await self._run(lambda db: db.execute("SELECT count(*) FROM axis_reminder_sent").fetchone()[0]))

    async def close(self) -> None:
        async with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def send_email(smtp: SmtpSettings, msg: EmailMessage) -> None:
    """Deliver ``msg`` (blocking: run on a thread). STARTTLS first when configured — refused (SMTPException) by a
    server that does not offer it; AUTH only over TLS."""
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
        client.ehlo()
        if smtp.starttls:
            if not client.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError(f"{smtp.host}:{smtp.port} does not offer STARTTLS "
                                                    "(reminders.smtp.starttls is on)")
            context = ssl.create_default_context(cafile=str(smtp.ca) if smtp.ca else None)
            client.starttls(context=context)
            client.ehlo()
        if smtp.username:
            if not smtp.starttls:
                raise smtplib.SMTPException("refusing to send the SMTP password without STARTTLS")
            client.login(smtp.username, smtp.password or "")
        client.send_message(msg)


async def post_webhook(http: httpx.AsyncClient, url: str, body: bytes, hook: WebhookSettings, *,
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                       clock: Callable[[], float] = time.time) -> tuple[bool, int, str]:
    """POST one signed digest, retried with back-off on network errors, 408, 429 and 5xx: (delivered, attempts,
    last error). Another 4xx is final for this round (the receiver refuses it: retrying would not help)."""
    delays = retry_delays(hook.retries, hook.backoff)
    error = ""
    for attempt in range(len(delays) + 1):
        if attempt:
            await sleep(delays[attempt - 1])
        timestamp = int(clock())
        headers = {"content-type": "application/json", EVENT_HEADER: EVENT, TIMESTAMP_HEADER: str(timestamp),
                   SIGNATURE_HEADER: sign_webhook(hook.secret, timestamp, body)}
        try:
            r = await http.post(url, content=body, headers=headers, timeout=hook.timeout)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            continue
        if r.is_success:
            return True, attempt + 1, ""
        error = f"HTTP {r.status_code}"
        if r.status_code < 500 and r.status_code not in (408, 429):
            return False, attempt + 1, error
    return False, len(delays) + 1, error


class _Counters(Collector):
    def __init__(self, counts: Mapping[str, dict[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, help_text in (("axis_reminders_sent", "Reminder digests delivered"),
                                ("axis_reminders_failed", "Reminder digests that could not be delivered in a round"),
                                ("axis_reminded_documents", "Document reminders delivered (one per document, "
                                                            "channel and period)")):
            family = CounterMetricFamily(name, help_text, labels=["channel"])
            for channel in CHANNELS:
                family.add_metric([channel], self.counts[name].get(channel, 0))
            yield family


class ReminderScheduler:
    """Rounds of reminders every ``settings.interval_seconds`` (see the module docstring)."""

    def __init__(self, settings: ReminderSettings | None, source: UncollectedSource | None, *,
                 names: Mapping[str, str] | None = None, gauges: UncollectedApi | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 webhook_verify: ssl.SSLContext | bool | None = None) -> None:
        self.settings = settings
        self.source = source
        self.names = dict(names or {})
        self.gauges = gauges
        self.clock = clock
        self.sleep = sleep
        self.sent = SentLog(settings.state) if settings is not None else None
        self.last: dict[str, Any] | None = None
        self.counts: dict[str, dict[str, int]] = {n: {} for n in ("axis_reminders_sent", "axis_reminders_failed",
                                                                  "axis_reminded_documents")}
        self._round = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        if webhook_verify is None:
            ca = settings.webhook.ca if settings is not None else None
            webhook_verify = ssl.create_default_context(cafile=str(ca)) if ca else True
        self._verify = webhook_verify
        self._http: httpx.AsyncClient | None = None
        self.path: Path | None = None
        self._stamp: tuple[int, int] | None = None

    @classmethod
    def for_settings(cls, settings: Any, gauges: UncollectedApi) -> ReminderScheduler:
        """From the admin settings: the ``reminders`` section of the configuration file (none: disabled)."""
        path = getattr(settings, "config_path", None)
        reminders = load_reminders(path) if path is not None else None
        directory = getattr(settings, "directory", None)
        names = {code: a.name for code, a in directory.agencies.items()} if directory is not None else {}
        scheduler = cls(reminders, gauges.source, names=names, gauges=gauges)
        scheduler.path = Path(path) if path is not None else None
        scheduler._stamp = file_stamp(scheduler.path)
        return scheduler

    def _reread(self) -> None:
        """The reminders section again when config.yaml changed (contacts, periods; the sent log stays)."""
        stamp = file_stamp(self.path)
        if self.path is None or stamp is None or stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            fresh = load_reminders(self.path)
        except ConfigError as exc:
            log.warning("reminders: %s; going on with the previous settings", exc)
            return
        if fresh is not None:
            self.settings = fresh

    @property
    def enabled(self) -> bool:
        return self.settings is not None and self.source is not None

    # -- one round ------------------------------------------------------------------------------------------------
    async def run_once(self, now: float | None = None) -> dict[str, Any]:
        """Plan and send the digests due now; the round's report."""
        if not self.enabled:
            return {"enabled": False}
        assert self.settings is not None and self.source is not None and self.sent is not None
        async with self._round:
            await asyncio.to_thread(self._reread)
            at = self.clock() if now is None else now
            policy = self.settings.policy
            source = await self.gauges.current() if self.gauges is not None else self.source
            assert source is not None
            waiting = await source.all(policy.after_seconds, now=at)
            if self.gauges is not None:
                self.gauges.observe(waiting, at, policy.after_seconds)
            already = await self.sent.among(due_keys(waiting, at, policy, self.settings.contacts))
            digests = plan(waiting, at, policy, self.settings.contacts, already)
            report: dict[str, Any] = {"at": iso(at), "waiting": len(waiting), "digests": len(digests),
                                      "sent": {c: 0 for c in CHANNELS}, "documents": {c: 0 for c in CHANNELS},
                                      "failed": []}
            for digest in digests:
                ok, error = await self._deliver(digest, at)
                if ok:
                    await self.sent.record(digest, at)
                    report["sent"][digest.channel] += 1
                    report["documents"][digest.channel] += len(digest.keys)
                    self._count("axis_reminders_sent", digest.channel, 1)
                    self._count("axis_reminded_documents", digest.channel, len(digest.keys))
                else:
                    report["failed"].append({"agency": digest.agency, "channel": digest.channel, "error": error})
                    self._count("axis_reminders_failed", digest.channel, 1)
                    log.warning("reminder to %s by %s not delivered: %s", digest.agency, digest.channel, error)
            self.last = report
            return report

    def _count(self, name: str, channel: str, n: int) -> None:
        self.counts[name][channel] = self.counts[name].get(channel, 0) + n

    async def _deliver(self, digest: Digest, now: float) -> tuple[bool, str]:
        assert self.settings is not None
        contact = self.settings.contacts[digest.agency]
        if digest.channel == "email":
            smtp = self.settings.smtp
            assert smtp is not None  # checked when the settings were read
            msg = email_message(digest, now, sender=smtp.sender, to=contact.email,
                                name=self.names.get(digest.agency, ""))
            try:
                await asyncio.to_thread(send_email, smtp, msg)
            except (OSError, smtplib.SMTPException) as exc:
                return False, f"{type(exc).__name__}: {exc}"[:300]
            return True, ""
        assert contact.webhook is not None
        if self._http is None:
            self._http = httpx.AsyncClient(trust_env=False, verify=self._verify)
        body = webhook_body(digest, now, self.settings.policy)
        ok, _attempts, error = await post_webhook(self._http, contact.webhook, body, self.settings.webhook,
                                                  sleep=self.sleep, clock=self.clock)
        return ok, error

    # -- lifecycle ------------------------------------------------------------------------------------------------
    async def _loop(self) -> None:
        assert self.settings is not None
        while True:
            try:
                await self.run_once()
            except Exception:  # a round must never end the loop (nor the admin app)
                log.exception("reminder round failed")
            await asyncio.sleep(self.settings.interval_seconds)

    async def _observe_loop(self) -> None:
        """Without reminders: the uncollected gauges still follow the inboxes (default ``after``, 24 h)."""
        assert self.source is not None and self.gauges is not None
        policy = ReminderPolicy()
        while True:
            try:
                now = self.clock()
                source = await self.gauges.current()
                if source is not None:
                    self.gauges.observe(await source.all(policy.after_seconds, now=now), now, policy.after_seconds)
            except Exception:  # the gauges must never end the loop (nor the admin app)
                log.exception("reading the uncollected deliveries failed")
            await asyncio.sleep(OBSERVE_SECONDS)

    async def start(self) -> None:
        if self._task is not None:
            return
        if self.enabled:
            self._task = asyncio.create_task(self._loop(), name="axis-reminders")
        elif self.source is not None and self.gauges is not None:
            self._task = asyncio.create_task(self._observe_loop(), name="axis-uncollected-gauges")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self.sent is not None:
            await self.sent.close()

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(_Counters(self.counts))

    def describe(self) -> dict[str, Any]:
        s = self.settings
        if s is None:
            return {"enabled": False}
        return {"enabled": self.enabled, "after_seconds": s.policy.after_seconds,
                "period_seconds": s.policy.period_seconds, "interval_seconds": s.interval_seconds,
                "smtp": None if s.smtp is None else {"host": s.smtp.host, "port": s.smtp.port,
                                                     "starttls": s.smtp.starttls, "from": s.smtp.sender},
                "webhook": {"retries": s.webhook.retries, "backoff": s.webhook.backoff,
                            "signed": bool(s.webhook.secret)},
                "contacts": len(s.contacts), "last_round": self.last}

    def install(self, app: FastAPI) -> None:
        scheduler = self

        @app.get("/admin/reminders", response_model=None)
        async def reminders() -> JSONResponse:
            return JSONResponse(scheduler.describe())

        @app.post("/admin/reminders/run", response_model=None)
        async def run_now() -> JSONResponse:
            if not scheduler.enabled:
                return JSONResponse({"type": "about:blank", "title": "Conflict", "status": 409,
                                     "detail": "reminders are not configured (reminders: in config.yaml)"},
                                    status_code=409, media_type="application/problem+json")
            return JSONResponse(await scheduler.run_once())

