"""The simulator's report: the axis's own counters beside what the simulator sent and what the inboxes hold.

``Report.as_json()`` is the contract's final object (section 3): ``{"scenario", "sent", "received", "refused",
"inbox", "agree", "seconds", ...}`` where ``sent``/``received``/``refused`` are the axis's counters (this run's
share: the counters read before the run are subtracted), ``inbox`` the deliveries found in the recipients'
inboxes, and ``agree`` whether the simulator's tally, the counters and the inboxes all match.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from axis.core.termsafe import plain, safe


@dataclass
class Report:
    scenario: str
    seed: int
    agencies: int = 0
    dedicated: int = 0
    shared: int = 0
    planned_documents: int = 0
    planned_deliveries: int = 0
    planned_bad: int = 0
    planned_statuses: int = 0
    accepted: int = 0  # good documents the endpoints took (202)
    refused_sync: dict[str, int] = field(default_factory=dict)  # bad envelopes refused at submission, by reason
    refused_async: dict[str, int] = field(default_factory=dict)  # bad envelopes refused later (status 02)
    unexpected: list[str] = field(default_factory=list)  # good refused, bad accepted and never refused, ...
    sent: int | None = None  # axis counters, this run's share
    received: int | None = None
    refused: int | None = None
    inbox: int = 0
    inbox_duplicates: int = 0
    inbox_mismatched_agencies: int = 0
    statuses_sent: int = 0
    statuses_failed: int = 0
    statuses_checked: int = 0
    statuses_seen: int = 0
    moves: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # the replay's phases, in order
    seconds: float = 0.0  # the replay: submit → drain → inboxes → statuses → checks (preparation apart)
    prepare_seconds: float = 0.0  # building and signing every envelope, before the replay clock starts
    prepare_workers: int = 0
    protocol: str = "v1"  # which agencies spoke the VPCP SDK's /vxp (axis.sim.vxp): v1 none, vxp all, mixed half
    vxp_agencies: int = 0
    prepared_bytes: int = 0
    total_seconds: float = 0.0  # preparation + replay
    generator_cpu_seconds: float = 0.0  # the simulator process's own CPU time during the replay
    dashboard: str | None = None
    stats_raw: dict[str, Any] = field(default_factory=dict)
    #: this run's leaves per event type in the evidence log (None: the axis keeps no log)
    log: dict[str, int] | None = None

    def log_expected(self) -> dict[str, int]:
        """The leaves this run must leave in the log, from the axis's own counters: a ``submitted`` and a
        ``routed`` leaf per counted document, a ``stored`` leaf per counted delivery, a ``status`` leaf per
        status (the 01 of every delivery and the ones the recipients sent), a ``refused`` leaf per refusal."""
        return {"submitted": self.sent or 0, "routed": self.sent or 0, "stored": self.received or 0,
                "status": (self.received or 0) + self.statuses_sent, "refused": self.refused or 0}

    @property
    def log_agree(self) -> bool:
        return self.log is None or self.log == self.log_expected()

    @property
    def refused_seen(self) -> int:
        return sum(self.refused_sync.values()) + sum(self.refused_async.values())

    @property
    def agree(self) -> bool:
        """Simulator tally == axis counters == inboxes, for documents and deliveries; every bad envelope
        refused and counted by the axis as refused; no delivery duplicated; every planned status taken."""
        return (
            self.accepted == self.planned_documents == self.sent
            and self.planned_deliveries == self.received == self.inbox
            and self.inbox_duplicates == 0
            and self.inbox_mismatched_agencies == 0
            and self.refused_seen == self.planned_bad == self.refused
            and self.statuses_failed == 0
            and not self.unexpected
            and self.log_agree
        )

    @property
    def refused_agree(self) -> bool:
        return self.refused == self.planned_bad

    @property
    def submitted(self) -> int:
        """Envelopes the replay submitted: the good documents and the bad ones."""
        return self.planned_documents + self.planned_bad

    @property
    def replay_rate(self) -> float | None:
        """Documents per second over the whole replay (all its phases)."""
        return self.planned_documents / self.seconds if self.seconds else None

    @property
    def generator_cpu_ms_per_document(self) -> float | None:
        return 1000 * self.generator_cpu_seconds / self.submitted if self.submitted else None

    def as_json(self) -> dict[str, Any]:
        rate = self.planned_documents / self.phases["submit"] if self.phases.get("submit") else None
        replay_rate = self.replay_rate
        cpu = self.generator_cpu_ms_per_document
        return {
            "scenario": self.scenario,
            "sent": self.sent,
            "received": self.received,
            "refused": self.refused,
            "inbox": self.inbox,
            "agree": self.agree,
            "seconds": round(self.seconds, 2),
            "seed": self.seed,
            "agencies": self.agencies,
            "dedicated": self.dedicated,
            "shared": self.shared,
            "simulator": {
                "documents": self.planned_documents,
                "accepted": self.accepted,
                "deliveries": self.planned_deliveries,
                "bad": self.planned_bad,
                "refused_at_submission": self.refused_sync,
                "refused_by_router": self.refused_async,
                "statuses_planned": self.planned_statuses,
                "statuses_sent": self.statuses_sent,
                "statuses_failed": self.statuses_failed,
            },
            "refused_agree": self.refused_agree,
            "log": None if self.log is None else {**self.log, "agree": self.log_agree},
            "inbox_duplicates": self.inbox_duplicates,
            "inbox_mismatched_agencies": self.inbox_mismatched_agencies,
            "statuses_checked": self.statuses_checked,
            "statuses_seen": self.statuses_seen,
            "moves": self.moves,
            "unexpected": self.unexpected[:50],
            "phases": {k: round(v, 2) for k, v in self.phases.items()},
            "documents_per_second": round(rate, 1) if rate else None,
            "replay_documents_per_second": round(replay_rate, 1) if replay_rate else None,
            "prepare_seconds": round(self.prepare_seconds, 2),
            "prepare_workers": self.prepare_workers,
            "prepared_megabytes": round(self.prepared_bytes / 1e6, 1),
            "total_seconds": round(self.total_seconds, 2),
            "generator_cpu_ms_per_document": round(cpu, 3) if cpu is not None else None,
            "dashboard": self.dashboard,
            "protocol": {"name": self.protocol, "vxp_agencies": self.vxp_agencies},
        }

    def render(self, console: Console) -> None:
        """The human report. The scenario's name, refusal reasons, migration results and unexpected events quote
        scenario files and servers' answers: they go through ``safe`` (inert text, never markup or controls)."""

        t = Table(title=f"axis traffic report — {safe(self.scenario)} (seed {self.seed})", show_lines=False)
        t.add_column("")
        t.add_column("simulator", justify="right")
        t.add_column("axis counters", justify="right")
        t.add_column("inboxes", justify="right")
        t.add_column("", justify="center")

        def mark(ok: bool) -> str:
            return "[green]✓[/]" if ok else "[bold red]✗[/]"

        def n(x: int | None) -> str:
            return "—" if x is None else f"{x:,}"

        t.add_row("agencies", f"{self.agencies:,}", "", "", "")
        t.add_row("  dedicated / shared", f"{self.dedicated:,} / {self.shared:,}", "", "", "")
        t.add_row("documents sent", n(self.accepted), n(self.sent), "", mark(self.accepted == self.sent ==
                                                                              self.planned_documents))  # fmt: skip
        t.add_row(
            "deliveries received",
            n(self.planned_deliveries),
            n(self.received),
            n(self.inbox),
            mark(self.planned_deliveries == self.received == self.inbox and self.inbox_duplicates == 0),
        )
        t.add_row("refused (bad envelopes)", n(self.refused_seen), n(self.refused), "",
                  mark(self.refused_seen == self.planned_bad and self.refused_agree))  # fmt: skip
        t.add_row("statuses sent back", n(self.statuses_sent), "", "", mark(self.statuses_failed == 0))
        if self.log is not None:
            want = self.log_expected()
            both = f"{self.log['submitted']:,} / {self.log['routed']:,}"
            t.add_row("evidence log: submitted/routed", n(self.sent), both, "",
                      mark(self.log["submitted"] == self.log["routed"] == want["routed"]))
            t.add_row("evidence log: stored", n(self.received), n(self.log["stored"]), "",
                      mark(self.log["stored"] == want["stored"]))
            t.add_row("evidence log: statuses, refused", f"{want['status']:,}, {want['refused']:,}",
                      f"{self.log['status']:,}, {self.log['refused']:,}", "",
                      mark(self.log["status"] == want["status"] and self.log["refused"] == want["refused"]))
        console.print(t)
        reasons = {**self.refused_sync}
        for k, v in self.refused_async.items():
            reasons[k] = reasons.get(k, 0) + v
        if reasons:
            console.print("refusals by reason: " + ", ".join(f"{safe(k)} {v}" for k, v in sorted(reasons.items())))
        if self.refused is not None and not self.refused_agree:
            sync, late = sum(self.refused_sync.values()), sum(self.refused_async.values())
            console.print(
                f"[yellow]note:[/] the axis's refused counter shows {self.refused:,}; the simulator saw "
                f"{sync:,} refused at submission (HTTP 4xx) and {late:,} refused by the router (status 02)"
            )
        if self.statuses_checked:
            console.print(f"statuses checked at senders: {self.statuses_seen}/{self.statuses_checked} arrived")
        for m in self.moves:
            style = "" if m.get("result") == "moved" else "[yellow]"
            console.print(f"{style}migration {safe(m.get('agency'))} → {safe(m.get('to'))}: {safe(m.get('result'))}")
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in self.phases.items())
        js = self.as_json()
        console.print(
            f"preparation (build + sign {self.submitted:,} envelopes, {self.prepared_bytes / 1e6:,.0f} MB, "
            f"{self.prepare_workers or 1} processes, before the replay clock): {self.prepare_seconds:.1f}s"
        )
        console.print(f"replay phases: {phases}")
        if self.vxp_agencies:
            console.print(f"protocol {self.protocol}: {self.vxp_agencies} of {self.agencies} agencies submitted and "
                          "sent statuses through the VPCP SDK's /vxp")
        cpu = js["generator_cpu_ms_per_document"]
        console.print(
            f"[bold]replay {self.seconds:.1f}s[/] — {js['replay_documents_per_second'] or '—'} documents/s over "
            f"the replay, {js['documents_per_second'] or '—'} documents/s submitted; simulator CPU "
            f"{'—' if cpu is None else f'{cpu:.2f}'} ms per document"
        )
        for u in self.unexpected[:10]:
            console.print(f"[yellow]unexpected:[/] {safe(u)}")
        verdict = "[bold green]AGREE[/]" if self.agree else "[bold red]DISAGREE[/]"
        console.print(f"{verdict}: simulator, axis counters, inboxes" + (" and the evidence log" if self.log is not None
                                                                         else ""))
        if self.dashboard:
            console.print(f"dashboard: {safe(self.dashboard)}")


class Reporter:
    """Progress on stderr: a Rich progress bar per phase plus live sent/delivered/refused/documents-per-second.
    ``quiet`` turns it into a no-op."""

    def __init__(self, *, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._t0 = time.monotonic()
        self.info = ""

    def __enter__(self) -> Reporter:
        if not self.quiet:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:,}/{task.total:,}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
                transient=False,
                refresh_per_second=4,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)

    def phase(self, name: str, total: int) -> None:
        if self._progress is None:
            return
        if self._task is not None:
            self._progress.update(self._task, visible=True)
        self._task = self._progress.add_task(name, total=max(total, 1), info="")

    def update(self, completed: int, info: str | None = None) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=completed, info=self.info if info is None else info)

    def log(self, text: str) -> None:
        """Print ``text``, Rich markup (the caller escapes what it quotes); terminal controls never pass."""

        if not self.quiet:
            self.console.print(plain(text, lines=True))
