"""The async driver: replays a traffic plan through a RUNNING axis over its REST API, then checks the result.

Phases (each shown with progress on stderr):

0. **prepare** — every planned message is built and signed by its agency (worker processes, one per core by
   default) BEFORE the replay clock starts, so signing never competes with the axis for CPU during the replay.
   Its time is reported apart (``prepare_seconds``); the replay time (``seconds``) covers phases 1-4.
1. **submit** — the prepared envelopes are POSTed to the sending agency's endpoint server with its own token,
   bounded concurrency, HTTP keep-alive (:mod:`axis.sim.http`, a lean client), optionally at a target rate. Bad
   envelopes must be refused, at submission (4xx with a reason) or later by the router (status 02 back to the
   sender).
2. **drain** — wait (bounded: it gives up when the counters stop moving) until the axis's counters
   (``GET /admin/counters``, cheap; ``/admin/stats`` on an axis without it) show every document sent and every
   delivery received.
3. **inbox** — page through ``GET /v1/inbox`` of every agency: this run's deliveries, duplicates, per agency.
4. **statuses** — recipients send the planned statuses (03 → 04 → 05 → 06, 15 for recalls) back, while the
   router's refusals are checked at the senders; then a sample of the statuses is checked at the senders.

Document ids carry a per-run tag, so runs against the same axis never collide with each other; counters are
read before the run and the report shows this run's share.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import dataclasses
import os
import random
import secrets
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from axis.core.termsafe import safe
from axis.sim import build, plan
from axis.sim.api import Api, new_client
from axis.sim.connections import AgencyConn, Connections
from axis.sim.report import Report, Reporter
from axis.sim.scenario import Scenario, on_directory
from axis.sim.vxp import VxpApi, vxp_agencies

STATUS_TEXT = {
    "03": "Đã tiếp nhận, vào sổ",
    "04": "Đã phân công xử lý",
    "05": "Đang xử lý",
    "06": "Đã hoàn thành",
    "15": "Đồng ý thu hồi",
}


@dataclass(frozen=True, slots=True)
class Options:
    rate: float | None = None  # documents per second; None: as fast as the axis takes them
    concurrency: int = 48
    workers: int | None = None  # signing processes; None: one per core; 0: in the driver's own process
    batch: int = 64
    sign: bool = True  # False: submit unsigned, the endpoint server signs with the key it holds
    stall_timeout: float = 60.0  # drain/refusal waits give up after this long without progress
    status_sample: int = 300  # documents whose statuses are checked at the sender
    tag: str | None = None  # document-number tag; default: random per run
    protocol: str = "v1"  # v1 | vxp | mixed: which agencies submit and send statuses through /vxp (axis.sim.vxp)


def signing_keys(agencies: Mapping[str, AgencyConn]) -> dict[str, build.KeyPaths]:
    """Agency code → its key and certificate files (connections.json), for the signing workers."""
    return {c: build.KeyPaths(a.key or "", a.cert or "", a.name) for c, a in agencies.items() if a.key and a.cert}


@dataclass
class _Sent:
    p: plan.PlannedMessage
    rid: str | None = None  # id returned by the submission (sender side)


class Driver:
    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        conns: Connections,
        opts: Options,
        reporter: Reporter,
        signers: build.SigningPool | None = None,
    ) -> None:
        if not set(a.code for a in scenario.agencies) <= set(conns.agencies):
            scenario = on_directory(scenario, [(a.code, a.name, a.server, a.kind) for a in conns.agencies.values()])
        self.sc = scenario
        self.seed = seed
        self.conns = conns
        self.agencies: dict[str, AgencyConn] = dict(conns.agencies)
        self.opts = opts
        self.rep = reporter
        self.tag = opts.tag or secrets.token_hex(3).upper()
        self.report = Report(scenario=scenario.name, seed=seed)
        self.sent: dict[int, _Sent] = {}
        self._api: Api | None = None
        self.signers = signers  # a pool started early by the caller (it keeps ownership), else one of our own

    @property
    def api(self) -> Api:
        assert self._api is not None
        return self._api

    # ---------------------------------------------------------------- helpers

    def _tagged(self, p: plan.PlannedMessage) -> plan.PlannedMessage:
        rel = p.related_document_id
        return dataclasses.replace(
            p,
            notation=f"{p.notation}-S{self.tag}",
            related_document_id=f"{rel}-S{self.tag}" if rel else None,
        )

    async def _counters(self) -> dict[str, Any]:
        return await self.api.counters(self.conns.admin_url, self.conns.admin_token)

    @property
    def workers(self) -> int:
        if self.signers is not None:
            return self.signers.workers
        return (os.cpu_count() or 1) if self.opts.workers is None else self.opts.workers

    def _keys(self) -> dict[str, build.KeyPaths]:
        return signing_keys(self.agencies)

    def _builds(self, items: Sequence[plan.PlannedMessage]) -> Iterator[cf.Future[list[bytes]]]:
        """Futures of built batches, in plan order (all submitted at once: the pool works through them)."""
        keys = self._keys()
        size = self.opts.batch
        batches = [items[i : i + size] for i in range(0, len(items), size)]
        if self.signers is not None and (self.signers.keys != keys or self.signers.sign != self.opts.sign):
            self.rep.log("[yellow]the signing pool started early holds other keys: starting another[/]")
            self.signers = None
        own = self.signers is None
        if not own:
            assert self.signers is not None
            pool: cf.Executor = self.signers.executor
            fn = build.build_batch
        elif self.workers > 0:
            pool = build.SigningPool(keys, sign=self.opts.sign, workers=self.workers).executor
            fn = build.build_batch
        else:
            b = build.Builder(keys, sign=self.opts.sign)
            pool = cf.ThreadPoolExecutor(1)

            def fn(batch: Sequence[plan.PlannedMessage]) -> list[bytes]:
                return [b.build(p) for p in batch]

        futures = [pool.submit(fn, batch) for batch in batches]
        try:
            yield from futures
        finally:
            for f in futures:
                f.cancel()
            if own:
                pool.shutdown(wait=True)

    # ---------------------------------------------------------------- phase 0: prepare (not timed as replay)

    async def prepare(self, msgs: Sequence[plan.PlannedMessage]) -> list[bytes]:
        """Build and sign every message (deterministic: the plan's seed and this run's tag), with progress."""
        self.rep.phase("prepare", len(msgs))
        loop = asyncio.get_running_loop()
        out: list[bytes] = []
        t0 = time.monotonic()
        for fut in self._builds(msgs):
            built = await asyncio.wrap_future(fut, loop=loop)
            out.extend(built)
            rate = len(out) / max(time.monotonic() - t0, 1e-6)
            self.rep.update(len(out), f"{rate:,.0f} envelopes/s signed ({self.workers or 1} processes)")
        self.report.prepared_bytes = sum(len(d) for d in out)
        return out

    # ---------------------------------------------------------------- phase 1: submit

    async def _submit_one(self, p: plan.PlannedMessage, data: bytes) -> None:
        who = self.agencies[p.submit_as or p.sender]
        a = await self.api.submit(who.endpoint, who.token, data)
        r = self.report
        if p.kind == "good":
            if a.status == 202 or a.ok:
                r.accepted += 1
                body = a.body if isinstance(a.body, dict) else {}
                self.sent[p.seq] = _Sent(p, str(body.get("id")) if body.get("id") is not None else None)
            else:
                r.unexpected.append(f"good document {p.document_id} refused: HTTP {a.status} {a.reason or a.body}")
            return
        if a.ok:  # the router must refuse it later (status 02)
            body = a.body if isinstance(a.body, dict) else {}
            self.sent[p.seq] = _Sent(p, str(body.get("id")) if body.get("id") is not None else None)
        elif 400 <= a.status < 500 and a.reason:
            r.refused_sync[a.reason] = r.refused_sync.get(a.reason, 0) + 1
            if a.reason != p.expect:
                r.unexpected.append(f"bad envelope ({p.expect}) refused with {a.reason}")
        else:
            r.unexpected.append(f"bad envelope ({p.expect}): HTTP {a.status} without a reason: {a.body!r:.200}")

    async def _move(self, m: plan.PlannedMove) -> None:
        a = await self.api.move(self.conns.admin_url, self.conns.admin_token, m.agency, m.to)
        entry: dict[str, Any] = {"agency": m.agency, "to": m.to, "http": a.status}
        if a.ok:
            body = a.body if isinstance(a.body, dict) else {}
            endpoint = body.get("endpoint")
            if endpoint:
                old = self.agencies[m.agency]
                self.agencies[m.agency] = dataclasses.replace(old, endpoint=str(endpoint).rstrip("/"), server=m.to)
            entry["result"] = "moved"
        else:
            entry["result"] = "not supported by this axis" if a.status in (404, 405, 501) else f"refused: {a.body}"
        self.report.moves.append(entry)
        self.rep.log(f"migration {safe(m.agency)} → {safe(m.to)}: {safe(entry['result'])}")

    async def submit(
        self, items: Sequence[plan.Planned], msgs: Sequence[plan.PlannedMessage], datas: Sequence[bytes]
    ) -> None:
        """Submit the prepared envelopes ``datas`` (``msgs[i]`` → ``datas[i]``); moves happen at their place."""
        moves_at: dict[int, list[plan.PlannedMove]] = {}
        idx = 0
        for p in items:  # a move happens before the message at its position
            if isinstance(p, plan.PlannedMove):
                moves_at.setdefault(idx, []).append(p)
            else:
                idx += 1
        self.rep.phase("submit", len(msgs))
        sem = asyncio.Semaphore(self.opts.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        done = 0
        t0 = time.monotonic()

        # A revocation, update or replacement names a document its sender has already sent: the endpoint server
        # refuses one whose original it has not recorded (FORBIDDEN), so it waits for its original's answer.
        answered = {(p.sender, p.document_id): asyncio.Event() for p in msgs}

        async def one(p: plan.PlannedMessage, data: bytes) -> None:
            nonlocal done
            mine = answered[(p.sender, p.document_id)]
            original = answered.get((p.sender, p.related_document_id or ""))
            try:
                if original is not None:
                    await original.wait()
                await self._submit_one(p, data)
            except Exception as exc:  # report it, never lose it silently
                self.report.unexpected.append(f"{p.kind} {p.document_id}: {type(exc).__name__}: {exc}")
            finally:
                mine.set()
                done += 1
                sem.release()

        for pos, (p, data) in enumerate(zip(msgs, datas, strict=True)):
            for m in moves_at.pop(pos, []):
                if tasks:
                    await asyncio.wait(set(tasks))  # documents already submitted reach the old home first
                await self._move(m)
            if self.opts.rate:
                delay = t0 + (pos + 1) / self.opts.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await sem.acquire()
            t = asyncio.create_task(one(p, data))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            if pos % 50 == 0:
                rate = done / max(time.monotonic() - t0, 1e-6)
                self.rep.update(done, f"{self.rep.info} {rate:,.0f} docs/s")
        if tasks:
            await asyncio.wait(set(tasks))
        for ms in moves_at.values():
            for m in ms:
                await self._move(m)
        self.rep.update(done)

    # ---------------------------------------------------------------- phase 2: drain

    async def drain(self, base: dict[str, Any]) -> dict[str, Any]:
        want_sent = self.report.accepted
        want_recv = self.report.planned_deliveries
        want_refused = sum(1 for s in self.sent.values() if s.p.kind == "bad")  # accepted, the router refuses
        self.rep.phase("drain", want_recv)
        last, last_change = None, time.monotonic()
        while True:
            s = await self._counters()
            sent = int(s.get("sent", 0)) - int(base.get("sent", 0))
            recv = int(s.get("received", 0)) - int(base.get("received", 0))
            refused = int(s.get("refused", 0)) - int(base.get("refused", 0))
            self.rep.update(recv, f"sent {sent:,} delivered {recv:,} refused {refused:,}")
            if sent >= want_sent and recv >= want_recv and refused >= want_refused:
                return s
            now = (sent, recv, refused)
            if now != last:
                last, last_change = now, time.monotonic()
            elif time.monotonic() - last_change > self.opts.stall_timeout:
                if sent >= want_sent and recv >= want_recv:
                    return s  # documents all through; the refusal counter is judged in the report
                self.rep.log(f"[yellow]drain: counters stopped moving for {self.opts.stall_timeout:.0f}s[/]")
                return s
            await asyncio.sleep(0.25)

    async def log_settled(self, base: dict[str, int]) -> dict[str, int]:
        """This run's leaves per event type, once the log has caught up with the counters (the log writer is a
        batch behind at most) or stopped moving for the stall timeout."""
        r = self.report
        want = r.log_expected()
        last, last_change = None, time.monotonic()
        while True:
            now = await self.api.log_counts(self.conns.admin_url, self.conns.admin_token) or {}
            got = {k: now.get(k, 0) - base.get(k, 0) for k in want}
            if got == want:
                return got
            if got != last:
                last, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > self.opts.stall_timeout:
                self.rep.log("[yellow]the evidence log stopped moving before it matched the counters[/]")
                return got
            await asyncio.sleep(0.25)

    # ---------------------------------------------------------------- phase 3: inboxes

    async def inboxes(self) -> dict[tuple[str, str, str], str]:
        """(recipient, sender, document_id) → inbox id for this run's deliveries; checks counts per agency."""
        expected: Counter[str] = Counter()
        for s in self.sent.values():
            if s.p.kind == "good":
                expected.update(s.p.recipients)
        codes = list(self.agencies)
        self.rep.phase("inboxes", len(codes))
        sem = asyncio.Semaphore(16)
        found: dict[tuple[str, str, str], str] = {}
        dupes = 0
        mismatched: list[str] = []
        done = 0
        marker = f"-S{self.tag}"

        async def one(code: str) -> None:
            nonlocal dupes, done
            a = self.agencies[code]
            async with sem:
                items = await self.api.inbox(a.endpoint, a.token)
            mine = 0
            for it in items:
                docid = str(it.get("document_id", ""))
                if not docid.endswith(marker):
                    continue
                mine += 1
                key = (code, str(it.get("from", docid.split(",", 1)[0])), docid)
                if key in found:
                    dupes += 1
                found[key] = str(it.get("id"))
            if mine != expected.get(code, 0):
                mismatched.append(f"{code}: inbox holds {mine}, expected {expected.get(code, 0)}")
            done += 1
            self.rep.update(done, f"{len(found):,} deliveries found")

        await asyncio.gather(*(one(c) for c in codes))
        self.report.inbox = len(found) + dupes
        self.report.inbox_duplicates = dupes
        self.report.inbox_mismatched_agencies = len(mismatched)
        self.report.unexpected.extend(mismatched[:20])
        return found

    # ---------------------------------------------------------------- phase 4: statuses and refusals

    async def statuses(self, found: dict[tuple[str, str, str], str]) -> None:
        jobs = [(r, s.p, codes) for s in self.sent.values() if s.p.kind == "good" for r, codes in s.p.statuses]
        total = sum(len(c) for _, _, c in jobs)
        self.rep.phase("statuses", total)
        sem = asyncio.Semaphore(self.opts.concurrency)

        async def one(r: str, p: plan.PlannedMessage, codes: tuple[str, ...]) -> None:
            rid = found.get((r, p.sender, p.document_id))
            a = self.agencies[r]
            if rid is None:
                self.report.statuses_failed += len(codes)
                return
            async with sem:
                for c in codes:  # in order: a recipient registers before it assigns, handles, finishes
                    ans = await self.api.post_status(a.endpoint, a.token, rid, c, STATUS_TEXT.get(c, c),
                                                     sender=p.sender, document_id=p.document_id)
                    if ans.ok:
                        self.report.statuses_sent += 1
                    else:
                        self.report.statuses_failed += 1
                        self.report.unexpected.append(f"status {c} from {r}: HTTP {ans.status} {ans.body!r:.120}")
                    n = self.report.statuses_sent + self.report.statuses_failed
                    if n % 50 == 0 or n == total:
                        self.rep.update(n)

        await asyncio.gather(*(one(*j) for j in jobs))

    async def _sender_statuses(self, s: _Sent) -> list[dict[str, Any]]:
        a = self.agencies[s.p.submit_as or s.p.sender]
        return await self.api.statuses(a.endpoint, a.token, s.rid or "")

    async def _gather_statuses(self, sents: Sequence[_Sent]) -> list[list[dict[str, Any]]]:
        sem = asyncio.Semaphore(16)

        async def one(s: _Sent) -> list[dict[str, Any]]:
            async with sem:
                return await self._sender_statuses(s)

        return list(await asyncio.gather(*(one(s) for s in sents)))

    async def check_refusals(self, *, progress: bool = True) -> None:
        """Bad envelopes the endpoints accepted must come back refused (status 02) with a reason. ``progress``
        False: no progress line of its own (it runs beside the statuses phase)."""
        pending = [s for s in self.sent.values() if s.p.kind == "bad"]
        if not pending:
            return
        if progress:
            self.rep.phase("router refusals", len(pending))
        last_change = time.monotonic()
        while pending and time.monotonic() - last_change < self.opts.stall_timeout:
            left = []
            answers = await self._gather_statuses(pending)
            for s, items in zip(pending, answers, strict=True):
                got = [x for x in items if str(x.get("code")) == "02"]
                if not got:
                    left.append(s)
                    continue
                reason = str(got[0].get("reason") or got[0].get("description") or "?")
                code = next((c for c in (s.p.expect or "",) if c and c in reason), reason.split(":")[0].strip())
                self.report.refused_async[code] = self.report.refused_async.get(code, 0) + 1
                if s.p.expect and s.p.expect not in reason:
                    self.report.unexpected.append(f"bad envelope ({s.p.expect}) refused by router with {reason}")
            if len(left) < len(pending):
                last_change = time.monotonic()
            pending = left
            if progress:
                self.rep.update(self.report.planned_bad - len(pending))
            if pending:
                await asyncio.sleep(0.5)
        for s in pending:
            self.report.unexpected.append(f"bad envelope ({s.p.expect}) {s.p.document_id} accepted, never refused")

    async def check_statuses(self) -> None:
        """A sample of senders must see the statuses their recipients sent."""
        with_statuses = [s for s in self.sent.values() if s.p.kind == "good" and s.p.statuses and s.rid]
        rng = random.Random(self.seed)
        sample = rng.sample(with_statuses, min(self.opts.status_sample, len(with_statuses)))
        if not sample:
            return
        want = {s.p.seq: {(r, c) for r, cs in s.p.statuses for c in cs} for s in sample}
        self.rep.phase("status check", sum(len(w) for w in want.values()))
        self.report.statuses_checked = sum(len(w) for w in want.values())
        seen: dict[int, set[tuple[str, str]]] = {s.p.seq: set() for s in sample}
        last_change = time.monotonic()
        pending = list(sample)
        while pending and time.monotonic() - last_change < self.opts.stall_timeout:
            left = []
            answers = await self._gather_statuses(pending)
            for s, items in zip(pending, answers, strict=True):
                got = {(str(x.get("from")), str(x.get("code"))) for x in items}
                before = len(seen[s.p.seq])
                seen[s.p.seq] = got & want[s.p.seq]
                if len(seen[s.p.seq]) > before:
                    last_change = time.monotonic()
                if seen[s.p.seq] != want[s.p.seq]:
                    left.append(s)
            pending = left
            self.report.statuses_seen = sum(len(v) for v in seen.values())
            self.rep.update(self.report.statuses_seen)
            if pending:
                await asyncio.sleep(0.5)
        if pending:
            self.report.unexpected.append(f"{len(pending)} sampled documents lack statuses their recipients sent")

    # ---------------------------------------------------------------- the run

    async def run(self) -> Report:
        t0 = time.monotonic()
        r = self.report
        kinds = {s.id: s.kind for s in self.sc.servers}
        r.agencies = len(self.sc.agencies)
        r.dedicated = sum(1 for a in self.sc.agencies if kinds[self.sc.placement[a.code]] == "dedicated")
        r.shared = r.agencies - r.dedicated
        r.dashboard = f"{self.conns.admin_url}/"
        items = list(plan.plan(self.sc, self.seed))
        tot = plan.totals(items)
        r.planned_documents, r.planned_deliveries = tot.documents, tot.deliveries
        r.planned_bad, r.planned_statuses = tot.bad, tot.statuses
        msgs = [self._tagged(p) for p in items if isinstance(p, plan.PlannedMessage)]
        datas = await self.prepare(msgs)
        r.prepare_seconds = time.monotonic() - t0
        r.prepare_workers = self.workers
        async with new_client(self.opts.concurrency, self.conns) as client:  # HTTPS: the axis CA
            # mutual TLS where a server asks for it; some agencies through the VPCP SDK's /vxp (--protocol)
            speakers = vxp_agencies(self.conns, self.opts.protocol)
            self._api = VxpApi(client, self.conns, speakers) if speakers else Api(client, self.conns)
            r.protocol, r.vxp_agencies = self.opts.protocol, len(speakers)
            base = await self._counters()
            log_base = await self.api.log_counts(self.conns.admin_url, self.conns.admin_token)
            t_replay, cpu_replay = time.monotonic(), time.process_time()  # the replay clock starts here
            phase_t = t_replay

            def lap(name: str) -> None:
                nonlocal phase_t
                now = time.monotonic()
                r.phases[name] = now - phase_t
                phase_t = now

            await self.submit(items, msgs, datas)
            del datas
            lap("submit")
            await self.drain(base)
            lap("drain")
            found = await self.inboxes()
            lap("inbox")
            await asyncio.gather(self.statuses(found), self.check_refusals(progress=False))
            lap("statuses")
            await self.check_statuses()
            lap("status check")
            final = await self._counters()
            r.seconds = time.monotonic() - t_replay
            r.generator_cpu_seconds = time.process_time() - cpu_replay
            r.stats_raw = final
            r.sent = int(final.get("sent", 0)) - int(base.get("sent", 0))
            r.received = int(final.get("received", 0)) - int(base.get("received", 0))
            r.refused = int(final.get("refused", 0)) - int(base.get("refused", 0))
            if log_base is not None:
                r.log = await self.log_settled(log_base)
        r.total_seconds = time.monotonic() - t0
        return r


async def simulate(
    scenario: Scenario,
    seed: int,
    conns: Connections,
    opts: Options,
    reporter: Reporter,
    signers: build.SigningPool | None = None,
) -> Report:
    return await Driver(scenario, seed, conns, opts, reporter, signers).run()
