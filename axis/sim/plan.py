"""The traffic plan: a pure, deterministic function of (scenario, seed).

``plan(scenario, seed)`` yields, in simulated-time order, every message the simulator will send: good
documents (new, revocation, update, replacement — related ones linked to an earlier document of the same
sender, with the same recipients), bad envelopes the axis must refuse (with the reason it must give), the
statuses each recipient sends back, and agency moves (migration scenarios).

Exact totals: the good documents are exactly ``scenario.documents`` and their recipients sum to exactly
``scenario.deliveries``. Recipient counts are drawn from the scenario's fan-out weights, then a seeded
correction adds or removes single recipients on new documents that no later document refers to until the sum
is exact (related documents copy their original's recipients, so they are never corrected directly). Bad
envelopes are extra: they are neither documents nor deliveries.

No global state: one ``random.Random(seed)`` drives everything, and nothing iterates over a set.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from axis.sim import agencies as ag
from axis.sim.scenario import Scenario, ScenarioError

UNKNOWN_CODE = "000.00.00.G99"  # a well-formed code that no directory holds
UNKNOWN_CODES = (UNKNOWN_CODE, "000.00.00.H99", "000.00.00.H98")
STATUS_CHAIN = ("03", "04", "05", "06")
DOC_TYPE_NAMES = {0: "new", 1: "revocation", 2: "update", 3: "replacement"}

NOTATION = {
    "Công văn": "",
    "Quyết định": "QĐ",
    "Thông báo": "TB",
    "Báo cáo": "BC",
    "Tờ trình": "TTr",
    "Kế hoạch": "KH",
    "Giấy mời": "GM",
    "Chỉ thị": "CT",
    "Nghị quyết": "NQ",
}

TOPICS = (
    "cải cách thủ tục hành chính", "xây dựng Chính phủ điện tử", "phòng, chống bệnh dịch tả lợn châu Phi",
    "kỳ thi trung học phổ thông quốc gia năm 2019", "thu ngân sách nhà nước quý I/2019",
    "giải ngân vốn đầu tư công năm 2019", "bảo đảm cung ứng điện mùa khô", "phòng cháy, chữa cháy rừng",
    "vận hành Trục liên thông văn bản quốc gia", "gửi, nhận văn bản điện tử", "công tác phòng, chống tham nhũng",
    "an toàn giao thông dịp nghỉ lễ 30/4 - 1/5", "tinh giản biên chế", "sắp xếp đơn vị hành chính cấp huyện, cấp xã",
    "chương trình mục tiêu quốc gia xây dựng nông thôn mới", "cắt giảm điều kiện kinh doanh",
    "cơ chế một cửa, một cửa liên thông", "tiếp công dân và giải quyết khiếu nại, tố cáo",
    "ứng phó với biến đổi khí hậu", "hạn hán, xâm nhập mặn vùng Đồng bằng sông Cửu Long",
    "bảo đảm an toàn thực phẩm", "quản lý nợ công", "chuyển đổi số trong cơ quan nhà nước",
    "chế độ báo cáo định kỳ", "tổ chức Đại hội Đảng bộ các cấp", "phổ biến, giáo dục pháp luật",
    "triển khai Cổng dịch vụ công quốc gia", "an toàn thông tin mạng", "quy hoạch tỉnh thời kỳ 2021-2030",
    "kiểm soát thủ tục hành chính",
)  # fmt: skip

SUBJECTS = {
    "Công văn": ("V/v triển khai {t}", "V/v góp ý dự thảo văn bản về {t}", "V/v báo cáo kết quả {t}",
                 "V/v đôn đốc thực hiện {t}"),
    "Quyết định": ("Quyết định ban hành kế hoạch {t}", "Quyết định thành lập Tổ công tác về {t}",
                   "Quyết định công bố thủ tục hành chính về {t}"),
    "Thông báo": ("Thông báo kết luận cuộc họp về {t}", "Thông báo ý kiến chỉ đạo về {t}"),
    "Báo cáo": ("Báo cáo tình hình {t} tháng {m}/2019", "Báo cáo sơ kết {t}"),
    "Tờ trình": ("Tờ trình về {t}", "Tờ trình đề nghị phê duyệt đề án {t}"),
    "Kế hoạch": ("Kế hoạch thực hiện {t} năm 2019",),
    "Giấy mời": ("Giấy mời dự hội nghị trực tuyến về {t}",),
    "Chỉ thị": ("Chỉ thị về tăng cường {t}",),
    "Nghị quyết": ("Nghị quyết về {t}",),
}  # fmt: skip
PREFIX = {1: "Thu hồi: ", 2: "Cập nhật: ", 3: "Thay thế: "}

EXTENSIONS = ((".pdf", "application/pdf", 6), (".docx", "application/vnd.openxmlformats-officedocument."
              "wordprocessingml.document", 3), (".zip", "application/zip", 1))  # fmt: skip


@dataclass(frozen=True, slots=True)
class PlannedAttachment:
    name: str
    size: int
    content_type: str


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    """One envelope to submit. ``kind`` is ``good`` or ``bad``; a bad one carries the reason code expected."""

    seq: int
    kind: str
    sender: str
    recipients: tuple[str, ...]
    subject: str
    type_name: str
    doc_type: int
    number: int
    notation: str
    at: dt.datetime
    attachments: tuple[PlannedAttachment, ...] = ()
    related: int | None = None
    related_document_id: str | None = None
    expect: str | None = None
    signer: str | None = None  # bad SIGNER_MISMATCH: whose key signs
    submit_as: str | None = None  # bad FORBIDDEN: whose credentials submit
    statuses: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    @property
    def document_id(self) -> str:
        return f"{self.sender},{self.at:%Y/%m/%d},{self.number}/{self.notation}"


@dataclass(frozen=True, slots=True)
class PlannedMove:
    """Migration: from this point on, ``agency`` lives on server ``to``."""

    seq: int
    agency: str
    to: str
    at: dt.datetime


Planned = PlannedMessage | PlannedMove


@dataclass(frozen=True, slots=True)
class Totals:
    documents: int
    deliveries: int
    bad: int
    statuses: int
    moves: int
    by_doc_type: dict[int, int]
    by_reason: dict[str, int]
    attachment_bytes: int


def totals(items: Iterator[Planned] | Sequence[Planned]) -> Totals:
    docs = deliveries = bad = statuses = moves = att = 0
    by_type: dict[int, int] = {}
    by_reason: dict[str, int] = {}
    for p in items:
        if isinstance(p, PlannedMove):
            moves += 1
            continue
        att += sum(a.size for a in p.attachments)
        if p.kind == "bad":
            bad += 1
            by_reason[p.expect or "?"] = by_reason.get(p.expect or "?", 0) + 1
            continue
        docs += 1
        deliveries += len(p.recipients)
        statuses += sum(len(c) for _, c in p.statuses)
        by_type[p.doc_type] = by_type.get(p.doc_type, 0) + 1
    return Totals(docs, deliveries, bad, statuses, moves, by_type, by_reason, att)


# ---------------------------------------------------------------- helpers


class _Picker:
    """Weighted choice over a fixed population by bisecting cumulative weights (O(log n) per draw)."""

    __slots__ = ("cum", "items", "total")

    def __init__(self, items: Sequence[str], weights: Sequence[float]) -> None:
        self.items = list(items)
        self.cum = list(itertools.accumulate(weights))
        self.total = self.cum[-1] if self.cum else 0.0

    def one(self, rng: random.Random) -> str:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.total)]

    def distinct(self, rng: random.Random, k: int, exclude: str) -> list[str]:
        """``k`` distinct items other than ``exclude``, weighted; uniform fallback if weights run dry."""
        chosen: list[str] = []
        seen = {exclude}
        tries = 0
        limit = 40 * k + 40
        if self.total > 0 and k <= len(self.items) // 2:
            while len(chosen) < k and tries < limit:
                tries += 1
                x = self.one(rng)
                if x not in seen:
                    seen.add(x)
                    chosen.append(x)
        if len(chosen) < k:
            rest = [x for x in self.items if x not in seen]
            chosen.extend(rng.sample(rest, k - len(chosen)))
        return chosen


def _weight_map(agencies: Sequence[ag.Agency], spec: tuple[tuple[str, float], ...]) -> list[float]:
    by_key = dict(spec)
    out = []
    for a in agencies:
        w = by_key.get(ag.short_code(a.code), by_key.get(a.code))
        if w is None:
            w = by_key.get(a.cls, 1.0)
        out.append(w)
    return out


def _abbr(a: ag.Agency) -> str:
    if a.code == ag.GOVERNMENT_OFFICE:
        return "VPCP"
    if a.cls == ag.PROVINCE:
        return "UBND"
    if a.cls == ag.PARTY:
        return "VPTW"
    words = [w for w in a.name.replace(",", " ").replace("-", " ").split() if w and w[0].isalpha()]
    return "".join(w[0].upper() for w in words[:5]) or "CQ"


def _timestamps(rng: random.Random, sc: Scenario, n: int) -> list[dt.datetime]:
    """``n`` sorted instants in the window: weekdays carry all but ``weekend_share``; office hours dominate,
    with a lunch dip; a little traffic early and late."""
    days = [sc.start + dt.timedelta(days=d) for d in range(sc.days)]
    weekdays = [d for d in days if d.weekday() < 5]
    weekends = [d for d in days if d.weekday() >= 5]
    h0, h1 = sc.mix.office_hours
    out: list[dt.datetime] = []
    for _ in range(n):
        pool = weekends if weekends and (not weekdays or rng.random() < sc.mix.weekend_share) else weekdays
        day = pool[rng.randrange(len(pool))]
        while True:
            hour = rng.uniform(h0, h1) if rng.random() < 0.93 else rng.uniform(6.0, 22.0)
            if not (11.75 <= hour < 13.25) or rng.random() < 0.35:
                break
        secs = int(hour * 3600)
        out.append(dt.datetime(day.year, day.month, day.day) + dt.timedelta(seconds=secs))
    out.sort()
    return out


def _attachments(rng: random.Random, sc: Scenario, seq: int) -> tuple[PlannedAttachment, ...]:
    counts = sc.mix.attachments_per_doc
    k = rng.choices([c for c, _ in counts], [w for _, w in counts])[0]
    sizes = sc.mix.attachment_sizes
    out = []
    for i in range(k):
        lo, hi, _ = rng.choices(sizes, [w for _, _, w in sizes])[0]
        size = int(math.exp(rng.uniform(math.log(lo), math.log(hi))))  # log-uniform within the class
        ext, ctype, _ = rng.choices(EXTENSIONS, [w for _, _, w in EXTENSIONS])[0]
        out.append(PlannedAttachment(f"vb{seq:06d}_{i + 1}{ext}", size, ctype))
    return tuple(out)


def _subject(rng: random.Random, type_name: str, at: dt.datetime) -> str:
    templates = SUBJECTS.get(type_name, ("{tn} về {t}",))
    return rng.choice(templates).format(t=rng.choice(TOPICS), m=at.month, tn=type_name)


def _statuses(rng: random.Random, sc: Scenario, recipients: Sequence[str], doc_type: int
              ) -> tuple[tuple[str, tuple[str, ...]], ...]:  # fmt: skip
    out: list[tuple[str, tuple[str, ...]]] = []
    for r in recipients:
        if rng.random() >= sc.mix.status_share:
            continue
        if doc_type == 1:  # a revocation is answered with agreement to the recall
            out.append((r, ("15",)))
            continue
        codes = [STATUS_CHAIN[0]]
        while len(codes) < len(STATUS_CHAIN) and rng.random() < sc.mix.status_continue:
            codes.append(STATUS_CHAIN[len(codes)])
        out.append((r, tuple(codes)))
    return tuple(out)


# ---------------------------------------------------------------- the plan


def _fanout(rng: random.Random, sc: Scenario, n_good: int, kinds: list[int], related: list[int | None],
            cap: int) -> list[int]:  # fmt: skip
    """Recipient counts per good document, summing exactly to ``sc.deliveries``."""
    values = [min(k, cap) for k, _ in sc.mix.fanout]
    weights = [w for _, w in sc.mix.fanout]
    counts = [0] * n_good
    for i in range(n_good):
        if kinds[i] == 0:
            counts[i] = rng.choices(values, weights)[0]
    dependents = [0] * n_good
    for i in range(n_good):
        r = related[i]
        if r is not None:
            dependents[r] += 1
    adjustable = [i for i in range(n_good) if kinds[i] == 0 and dependents[i] == 0]
    fixed = sum(counts[i] * (1 + dependents[i]) for i in range(n_good) if kinds[i] == 0 and dependents[i])
    lo, hi = fixed + len(adjustable), fixed + len(adjustable) * cap
    if not lo <= sc.deliveries <= hi:
        raise ScenarioError(f"deliveries: {sc.deliveries} not reachable with this mix (between {lo} and {hi} for seed)")
    diff = sc.deliveries - (fixed + sum(counts[i] for i in adjustable))
    step = 1 if diff > 0 else -1
    while diff:
        i = adjustable[rng.randrange(len(adjustable))]
        c = counts[i] + step
        if 1 <= c <= cap:
            counts[i] = c
            diff -= step
    for i in range(n_good):
        r = related[i]
        if r is not None:
            counts[i] = counts[r]
    return counts


def plan(sc: Scenario, seed: int) -> Iterator[Planned]:
    """Every message of the scenario, in simulated-time order. Same (scenario, seed) → same plan."""
    rng = random.Random(seed)
    agencies = list(sc.agencies)
    by_code = {a.code: a for a in agencies}
    codes = [a.code for a in agencies]
    senders = _Picker(codes, _weight_map(agencies, sc.mix.sender_weights))
    rweights = _weight_map(agencies, sc.mix.recipient_weights)
    everyone = _Picker(codes, rweights)
    groups: dict[str, _Picker] = {}
    if sc.mix.locality > 0:
        members: dict[str, tuple[list[str], list[float]]] = {}
        for a, w in zip(agencies, rweights, strict=True):
            cs, ws = members.setdefault(a.group, ([], []))
            cs.append(a.code)
            ws.append(w)
        groups = {g: _Picker(cs, ws) for g, (cs, ws) in members.items()}
    cap = len(agencies) - 1

    n_good, n_bad = sc.documents, sc.bad
    total = n_good + n_bad
    times = _timestamps(rng, sc, total)
    bad_slots = set(rng.sample(range(total), n_bad)) if n_bad else set()

    # pass 1: sender, kind and links of every good document
    good_sender: list[str] = []
    kinds: list[int] = []
    related: list[int | None] = []
    originals: dict[str, list[int]] = {}
    p_rev, p_upd, p_rep = sc.mix.revocation, sc.mix.update, sc.mix.replacement
    for _ in range(n_good):
        s = senders.one(rng)
        x = rng.random()
        kind = 1 if x < p_rev else 2 if x < p_rev + p_upd else 3 if x < p_rev + p_upd + p_rep else 0
        rel = None
        mine = originals.get(s)
        if kind and mine:
            rel = mine[-1 - min(len(mine) - 1, int(rng.expovariate(0.3)))]  # mostly recent documents
        else:
            kind = 0
            originals.setdefault(s, []).append(len(kinds))
        good_sender.append(s)
        kinds.append(kind)
        related.append(rel)
    counts = _fanout(rng, sc, n_good, kinds, related, cap)

    # moves happen between messages, at a fraction of the run
    move_at = sorted(((min(total, round(m.at * total)), i) for i, m in enumerate(sc.moves)))
    numbers: dict[str, int] = {}
    gi = 0
    recipients_of: list[tuple[str, ...]] = []
    docid_of: list[str] = []
    type_of: list[str] = []
    subject_of: list[str] = []
    slot_of: list[int] = []
    type_names = [t for t, _ in sc.mix.doc_types]
    type_weights = [w for _, w in sc.mix.doc_types]
    mi = 0
    for slot in range(total):
        while mi < len(move_at) and move_at[mi][0] <= slot:
            m = sc.moves[move_at[mi][1]]
            yield PlannedMove(seq=slot, agency=m.agency, to=m.to, at=times[min(slot, total - 1)])
            mi += 1
        at = times[slot]
        if slot in bad_slots:
            yield _bad(rng, sc, slot, at, senders, everyone, numbers, by_code, codes)
            continue
        sender = good_sender[gi]
        kind = kinds[gi]
        numbers[sender] = number = numbers.get(sender, 0) + 1
        rel = related[gi]
        if rel is None:
            k = counts[gi]
            pool = groups.get(by_code[sender].group) if groups and rng.random() < sc.mix.locality else None
            if pool is None or len(pool.items) - 1 < k:
                pool = everyone
            recips = tuple(pool.distinct(rng, k, sender))
            type_name = rng.choices(type_names, type_weights)[0]
            subject = _subject(rng, type_name, at)
            rel_docid = None
        else:
            recips = recipients_of[rel]
            type_name = type_of[rel]
            subject = PREFIX[kind] + subject_of[rel]
            rel_docid = docid_of[rel]
        a = by_code[sender]
        prefix = NOTATION.get(type_name, "")
        notation = f"{prefix}-{_abbr(a)}" if prefix else _abbr(a)
        msg = PlannedMessage(
            seq=slot,
            kind="good",
            sender=sender,
            recipients=recips,
            subject=subject,
            type_name=type_name,
            doc_type=kind,
            number=number,
            notation=notation,
            at=at,
            attachments=_attachments(rng, sc, slot) if kind != 1 else (),
            related=None if rel is None else slot_of[rel],
            related_document_id=rel_docid,
            statuses=_statuses(rng, sc, recips, kind),
        )
        recipients_of.append(recips)
        docid_of.append(msg.document_id)
        type_of.append(type_name)
        subject_of.append(subject)
        slot_of.append(slot)
        gi += 1
        yield msg
    while mi < len(move_at):
        m = sc.moves[move_at[mi][1]]
        yield PlannedMove(seq=total, agency=m.agency, to=m.to, at=times[-1])
        mi += 1


def _bad(rng: random.Random, sc: Scenario, slot: int, at: dt.datetime, senders: _Picker, everyone: _Picker,
         numbers: dict[str, int], by_code: dict[str, ag.Agency], codes: list[str]) -> PlannedMessage:  # fmt: skip
    reason = rng.choices([k for k, _ in sc.bad_kinds], [w for _, w in sc.bad_kinds])[0]
    sender = senders.one(rng)
    numbers[sender] = number = numbers.get(sender, 0) + 1
    k = rng.choice((1, 1, 2, 3))
    recips = everyone.distinct(rng, min(k, len(codes) - 1), sender)
    signer = submit_as = None
    if reason == "UNKNOWN_RECIPIENT":
        # every recipient unknown: nothing can be delivered, the whole envelope is refused (a document with
        # some known recipients would be delivered to those and only partly refused)
        recips = list(UNKNOWN_CODES[: len(recips)])
    elif reason == "SIGNER_MISMATCH":
        signer = everyone.distinct(rng, 1, sender)[0]
    elif reason == "FORBIDDEN":
        submit_as = everyone.distinct(rng, 1, sender)[0]
    type_name = "Công văn"
    a = by_code[sender]
    return PlannedMessage(
        seq=slot,
        kind="bad",
        sender=sender,
        recipients=tuple(recips),
        subject=_subject(rng, type_name, at),
        type_name=type_name,
        doc_type=0,
        number=number,
        notation=_abbr(a),
        at=at,
        attachments=_attachments(rng, sc, slot)[:1],
        expect=reason,
        signer=signer,
        submit_as=submit_as,
    )
