"""The router's decisions on a submission by reference (axis.router.blobs) are those on the same bytes inline:
same deliveries (carrying the reference, empty bodies), same counts (real size), same evidence leaves (the blob's
SHA-256 is the exact bytes' digest), same refusals; the blob is held per recipient and the door's hold released
once settled."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest

from axis.blobs import BlobStore, FileBlobStore
from axis.core.blobref import BlobRef, submitted_hold
from axis.core.directory import Directory
from axis.core.wire import EX_DELIVER, EX_DLX, H_BLOB, H_DETAIL, H_KIND, H_REASON, H_RECIPIENTS, H_SERVER
from axis.router.blobs import BlobRouting
from axis.router.core import Outcome, RouterCore
from tests.router.test_router_core import G01, G03, G22, H53, NOW, doc
from tests.support.testing import TestPKI, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), [G22, H53, G01, G03], algorithm="ec")


@pytest.fixture(scope="module")
def core(pki: TestPKI) -> RouterCore:
    d = Directory.from_records([("d1", "dedicated"), ("d2", "dedicated"), ("sh", "shared")],
                               [(G22, "a", "d1"), (H53, "b", "d2"), (G01, "c", "sh"), (G03, "d", "sh")])
    return RouterCore(d, pki.verifier(), max_bytes=1_000_000, clock=lambda: NOW)


def put(store: BlobStore, data: bytes) -> BlobRef:
    spool = store.spool()
    spool.write(data)
    ref = spool.commit()
    store.hold(ref.sha256, submitted_hold("d1"))
    return ref


def comparable(out: Outcome) -> tuple[object, ...]:
    deliveries = sorted((o.exchange, o.routing_key, tuple(sorted((k, str(v)) for k, v in o.headers.items()
                                                                 if k not in (H_BLOB, H_DETAIL))))
                        for o in out.outgoing)
    accepted = [dataclasses.replace(a) for a in out.accepted]
    refused = [(r.reason, r.size, r.sender) for r in out.refused]
    return deliveries, accepted, refused, out.events, out.reason


def test_same_outcome_as_inline(pki: TestPKI, core: RouterCore, tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    data = doc(pki, G22, [G01, H53, G03])
    ref = put(store, data)
    inline = core.process(data, {H_KIND: "document", H_SERVER: "d1"}, "m1")
    routing = BlobRouting(store, max_bytes=10_000_000)
    by_ref = routing.process(core, {H_KIND: "document", H_SERVER: "d1", H_BLOB: ref.header}, "m1")
    assert comparable(by_ref) == comparable(inline)
    assert all(e.sha256 == ref.sha256 for e in by_ref.events)  # the log's leaves: the exact bytes' digest
    for o in by_ref.outgoing:
        assert o.body == b"" and o.headers[H_BLOB] == ref.header
    # held for each recipient before anything is published; the door's hold goes once settled
    assert store.holders(ref.sha256) == sorted([G01, G03, H53, submitted_hold("d1")])
    routing.settled(by_ref)
    assert store.holders(ref.sha256) == sorted([G01, G03, H53])


def test_refusals_are_the_inline_ones(pki: TestPKI, core: RouterCore, tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    routing = BlobRouting(store, max_bytes=10_000_000)
    unknown = doc(pki, G22, [G01, "000.00.00.X99"])
    tampered = doc(pki, G22, [G01]).replace(b">Subject<", b">Subjekt<", 1)
    malformed = doc(pki, G22, [G01]).replace(b"<Subject>", b"<Subjekt>", 1)
    for data in (unknown, tampered, malformed):
        ref = put(store, data)
        inline = core.process(data, {H_KIND: "document", H_SERVER: "d1"}, "m2")
        by_ref = routing.process(core, {H_KIND: "document", H_SERVER: "d1", H_BLOB: ref.header}, "m2")
        if data is not malformed:  # a malformed one: the claims of the unverified bytes are not read from a blob
            assert comparable(by_ref) == comparable(inline)
        assert [o.headers.get(H_REASON) for o in by_ref.outgoing] == [o.headers.get(H_REASON) for o in inline.outgoing]
        assert by_ref.reason == inline.reason
        for o in by_ref.outgoing:
            if o.exchange == EX_DLX:
                assert o.headers[H_BLOB] == ref.header  # the dead letter names the blob
            elif o.headers.get(H_KIND) == "refusal":
                notice = orjson.loads(o.body)
                assert notice["sha256"] in (None, ref.sha256)
    assert core.process(tampered, {H_KIND: "document", H_SERVER: "d1"}, "m3").reason is not None


def test_a_missing_or_forged_blob_is_refused(core: RouterCore, tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    routing = BlobRouting(store, max_bytes=10_000_000)
    ghost = BlobRef("0" * 64, 10)
    out = routing.process(core, {H_KIND: "document", H_SERVER: "d1", H_BLOB: ghost.header}, "m4")
    assert out.reason is not None and out.reason.value == "XML_MALFORMED"
    assert not [o for o in out.outgoing if o.exchange == EX_DELIVER and o.headers.get(H_KIND) == "document"]
    bad = routing.process(core, {H_KIND: "document", H_SERVER: "d1", H_BLOB: "sha256:zz"}, "m5")
    assert bad.reason is not None and bad.reason.value == "SCHEMA_INVALID"


def test_a_blob_that_is_not_its_name_is_refused(pki: TestPKI, core: RouterCore, tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    data = doc(pki, G22, [G01])
    ref = put(store, data)
    other = doc(pki, G22, [H53])
    (tmp_path / ref.sha256[:2] / ref.sha256).write_bytes(other[:len(data)].ljust(len(data)))
    out = BlobRouting(store, max_bytes=10_000_000).process(
        core, {H_KIND: "document", H_SERVER: "d1", H_BLOB: ref.header}, "m6")
    assert out.reason is not None
    assert not [o for o in out.outgoing if o.headers.get(H_RECIPIENTS)]


def test_a_forward_by_reference_is_the_inline_forward(pki: TestPKI, tmp_path: Path) -> None:
    """A delivery by reference for an agency that moved away from its server, handed back (a live move): the same
    deliveries as the inline forward (by reference), nothing counted; refused as the inline one is."""
    from axis.core.directory import Agency, Server
    from axis.core.wire import H_BOUNCES, H_FORWARD_KIND

    servers = [Server("d1", "dedicated"), Server("d2", "dedicated"), Server("sh", "shared")]
    moved = RouterCore(Directory(servers, [Agency(G22, "a", "d1"), Agency(G01, "c", "d2", ("sh",)),
                                           Agency(G03, "d", "sh"), Agency(H53, "b", "sh")]),
                       pki.verifier(), max_bytes=1_000_000, clock=lambda: NOW)
    store = FileBlobStore(tmp_path)
    routing = BlobRouting(store, max_bytes=10_000_000)
    data = doc(pki, G22, [G01, G03])
    ref = put(store, data)
    fwd = {H_KIND: "forward", H_FORWARD_KIND: "document", H_RECIPIENTS: [G01], H_SERVER: "sh"}
    inline = moved.process(data, fwd, "f1")
    by_ref = routing.process(moved, {**fwd, H_BLOB: ref.header}, "f1")
    assert inline.reason is None and comparable(by_ref) == comparable(inline)
    assert [(o.routing_key, o.headers[H_RECIPIENTS], o.headers[H_BLOB], o.body) for o in by_ref.outgoing] == [
        ("d2", [G01], ref.header, b"")]
    assert by_ref.accepted == [] and by_ref.events == []
    assert G01 in store.holders(ref.sha256)
    # forwarding for an agency that is not a recipient, or for one the forwarding server hosts: refused as inline
    for bad in ({**fwd, H_RECIPIENTS: [H53]}, {**fwd, H_RECIPIENTS: [G03]}):
        inline = moved.process(data, bad, "f2")
        by_ref = routing.process(moved, {**bad, H_BLOB: ref.header}, "f2")
        assert inline.reason is not None and by_ref.reason == inline.reason
        assert [o.exchange for o in by_ref.outgoing] == [o.exchange for o in inline.outgoing] == [EX_DLX]
    # while the server and this router disagree (a reload), it goes back with one more bounce
    back = RouterCore(Directory(servers, [Agency(G22, "a", "d1"), Agency(G01, "c", "sh", ("d2",)),
                                          Agency(G03, "d", "sh")]), pki.verifier(), max_bytes=1_000_000,
                      clock=lambda: NOW)
    out = routing.process(back, {**fwd, H_BLOB: ref.header, H_BOUNCES: "3"}, "f3")
    assert [(o.routing_key, o.headers[H_BOUNCES]) for o in out.outgoing] == [("sh", 4)]


def test_prefetch_is_bounded_by_bytes_with_big_documents() -> None:
    from axis.config.model import Limits
    from axis.router.blobs import INFLIGHT_BYTES, MIN_PREFETCH, prefetch_for

    assert prefetch_for(Limits(), 1024) == 1024  # no big documents: unchanged
    small = Limits(max_document_bytes=200 << 20, inline_max_bytes=256 << 10)
    assert prefetch_for(small, 1024) == 1024 and 1024 * small.inline_limit <= INFLIGHT_BYTES
    big = Limits(max_document_bytes=200 << 20, inline_max_bytes=8 << 20)
    assert prefetch_for(big, 1024) == 32 and 32 * big.inline_limit <= INFLIGHT_BYTES
    assert prefetch_for(Limits(max_document_bytes=200 << 20, inline_max_bytes=25 << 20), 1024) == MIN_PREFETCH
    assert prefetch_for(small, 64) == 64  # never raised


@pytest.mark.postgres
def test_an_unreachable_blob_store_is_no_refusal(pki: TestPKI, core: RouterCore, tmp_path: Path) -> None:
    """blobs.url's database down while a reference waits: the message is not refused (it is redelivered, see
    RouterService._decide), and settling never fails on the door's hold."""
    from axis.blobs import BlobStoreUnavailable, PostgresBlobStore
    from tests.blobs.test_postgres_store import cut_database
    from tests.conftest import fresh_pg_database

    with fresh_pg_database("axis_router_blobs") as url:
        store = PostgresBlobStore(url, tmp_path / "tmp")
        ref = put(store, doc(pki, G22, [H53]))
        routing = BlobRouting(store, max_bytes=10_000_000)
        decided = routing.process(core, {H_KIND: "document", H_SERVER: "d1", H_BLOB: ref.header}, "m1")
        assert decided.accepted and not decided.refused
        cut_database(url, allow=False)
        try:
            with pytest.raises(BlobStoreUnavailable):
                routing.process(core, {H_KIND: "document", H_SERVER: "d1", H_BLOB: ref.header}, "m2")
            routing.settled(decided)  # logged, not raised: the door's hold stays
        finally:
            cut_database(url, allow=True)
        assert submitted_hold("d1") in store.holders(ref.sha256)
        store.close()
