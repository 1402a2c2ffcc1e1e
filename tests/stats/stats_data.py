"""A small known traffic set and directory for the statistics tests (expected figures worked out by hand)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from axis.stats.store import Accepted, Delivered, Refused, StatsStore


@dataclass(frozen=True)
class Agency:
    code: str
    name: str
    server: str


@dataclass(frozen=True)
class Server:
    id: str
    kind: str


@dataclass(frozen=True)
class Directory:
    agencies: dict[str, Agency] = field(default_factory=dict)
    servers: dict[str, Server] = field(default_factory=dict)


G01, G02, H01, H02, H03 = "000.00.00.G01", "000.00.00.G02", "000.00.00.H01", "000.00.00.H02", "000.00.00.H03"

DIRECTORY = Directory(
    agencies={
        G01: Agency(G01, "Văn phòng Chính phủ", "s-g01"),
        G02: Agency(G02, "Bộ Nội vụ", "s-g02"),
        H01: Agency(H01, "UBND tỉnh Tây Ninh", "shared-1"),
        H02: Agency(H02, "UBND tỉnh Hà Giang", "shared-1"),
        H03: Agency(H03, "UBND tỉnh Cà Mau", "shared-2"),
    },
    servers={
        "s-g01": Server("s-g01", "dedicated"),
        "s-g02": Server("s-g02", "dedicated"),
        "shared-1": Server("shared-1", "shared"),
        "shared-2": Server("shared-2", "shared"),
    },
)
KIND = {code: DIRECTORY.servers[a.server].kind for code, a in DIRECTORY.agencies.items()}

DAY1 = datetime(2019, 3, 12, tzinfo=UTC)
DAY2 = datetime(2019, 3, 13, tzinfo=UTC)

# (document, sender, recipients, delivered-to, latency ms, accepted at)
DOCS = [
    ("D1", G01, (H01, H02), (H01, H02), 3.0, DAY1 + timedelta(hours=8)),
    ("D2", G02, (G01,), (G01,), 30.0, DAY1 + timedelta(hours=8, minutes=10)),
    ("D3", H01, (G01, G02, H03), (G01, G02, H03), 700.0, DAY1 + timedelta(hours=9)),
    ("D4", G01, (H03,), (), 0.5, DAY2 + timedelta(hours=10)),  # not delivered yet: pending 1
]
REFUSALS = [
    ("m1", G02, "SIGNATURE_INVALID", DAY1 + timedelta(hours=8, minutes=30)),
    ("m2", None, "XML_MALFORMED", DAY2 + timedelta(hours=1)),
    ("m3", H02, "SIGNATURE_INVALID", DAY2 + timedelta(hours=2)),
]


def key(doc: str, sender: str) -> str:
    return f"{sender}|{doc}|1"


def rows() -> tuple[list[Accepted], list[Delivered], list[Refused]]:
    acc, dl, ref = [], [], []
    for i, (doc, sender, recipients, delivered, latency, at) in enumerate(DOCS):
        acc.append(
            Accepted(
                key(doc, sender),
                sender,
                KIND[sender],
                doc,
                1,
                1000 * (i + 1),
                tuple((r, KIND[r]) for r in recipients),
                latency,
                at,
            )
        )
        for r in delivered:
            dl.append(Delivered(key(doc, sender), sender, KIND[sender], r, KIND[r], doc, at + timedelta(minutes=1)))
    for mid, sender, reason, at in REFUSALS:
        ref.append(Refused(mid, sender, reason, 50, at))
    return acc, dl, ref


async def fill(store: StatsStore) -> None:
    acc, dl, ref = rows()
    await store.record(accepted=acc, delivered=dl, refused=ref)
