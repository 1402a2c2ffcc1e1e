"""The work directory's records of checked documents (endpoints.checked): a document checked in full by one host
process is not checked again by another of the same machine — what the check decided about the bytes is taken
from the record, the certificate's moment-dependent part (validity, CRL, usage) is checked again, and anything
wrong with a record makes it a miss, never an error."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from axis.core import envelope
from axis.core.reasons import Reason, Refusal
from endpoints.checked import BUCKET_SECONDS, CheckedRecords, generation, records_root, revive
from endpoints.checks import TOTALS, DeliveryChecks
from tests.support.testing import TestPKI, make_pki

A, B = "000.00.00.G01", "000.00.00.H01"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), [A, B], algorithm="ec")


def two_processes(kit: TestPKI, root: Path, **verifier: object) -> tuple[DeliveryChecks, DeliveryChecks]:
    """Two host processes' checks: each its own verifier and cache, one records directory (the door's ``check``
    records, a delivery's ``check_keyed`` looks up)."""
    first, second = kit.verifier(**verifier), kit.verifier(**verifier)
    return (DeliveryChecks(first, records=CheckedRecords(root, first)),
            DeliveryChecks(second, records=CheckedRecords(root, second)))


def test_checked_once_per_machine_with_the_same_model(kit: TestPKI, tmp_path: Path) -> None:
    door, recipient = two_processes(kit, tmp_path)
    body = kit.envelope(A, [B], subject="Về việc kiểm tra một lần")
    before = dict(TOTALS)
    full = door.check(body)
    assert isinstance(full, envelope.DocumentMessage)
    assert recipient.records is not None and recipient.records.hits == 0
    recorded, key = recipient.check_keyed(body)
    assert recipient.records.hits == 1 and key == hashlib.sha256(body).digest()  # no second signature check
    assert recorded == dataclasses.replace(full, attachments=())  # the whole header model, without attachments
    assert recipient.check_keyed(body)[0] == recorded and recipient.hits == 1  # then from its own cache
    # what axis_endpoint_document_checks_total reports (here both "processes" are this one)
    assert {how: TOTALS[how] - before[how] for how in TOTALS} == {"full": 1, "machine": 1, "process": 1}
    [record] = (tmp_path / generation(recipient.verifier)).glob("*/*")
    assert record.stat().st_mode & 0o777 == 0o600 and record.parent.stat().st_mode & 0o777 == 0o700


def test_the_door_records_but_does_not_look_up(kit: TestPKI, tmp_path: Path) -> None:
    """A submission is new bytes as a rule: the door checks in full without trying the records (each try is a
    missing file) and records what it checked for the recipients' processes."""
    door, other_door = two_processes(kit, tmp_path)
    body = kit.envelope(A, [B])
    door.check(body)
    other_door.check(body)
    assert other_door.records is not None and other_door.records.hits == 0


def test_a_record_hit_still_checks_the_certificate_at_this_moment(kit: TestPKI, tmp_path: Path) -> None:
    now = [dt.datetime.now(dt.UTC)]
    door, recipient = two_processes(kit, tmp_path, clock=lambda: now[0])
    body = kit.envelope(A, [B])
    door.check(body)
    now[0] += dt.timedelta(days=365 * 30)  # past the certificate's end
    with pytest.raises(Refusal) as exc:
        recipient.check_keyed(body)
    assert exc.value.reason is Reason.CERT_EXPIRED


def test_a_revocation_applies_to_what_was_recorded_before_it(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", [A, B], algorithm="ec")
    body = pki.envelope(A, [B])
    before = pki.verifier()
    (tmp_path / "checked").mkdir()
    DeliveryChecks(before, records=CheckedRecords(tmp_path / "checked", before)).check(body)
    pki.revoke(A)
    after = pki.verifier()  # the new CRL: same trust anchors, so the same generation of records
    assert generation(after) == generation(before)
    checks = DeliveryChecks(after, records=CheckedRecords(tmp_path / "checked", after))
    with pytest.raises(Refusal) as exc:
        checks.check_keyed(body)
    assert exc.value.reason is Reason.CERT_REVOKED
    assert checks.records is not None and checks.records.hits == 1  # refused at the record's re-check


def test_another_policy_never_reads_the_records(kit: TestPKI, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other", [A, B], algorithm="ec")  # another axis CA
    body = kit.envelope(A, [B])
    (tmp_path / "checked").mkdir()
    door = DeliveryChecks(kit.verifier(), records=CheckedRecords(tmp_path / "checked", kit.verifier()))
    door.check(body)
    foreign = other.verifier()
    assert generation(foreign) != generation(kit.verifier())
    stranger = DeliveryChecks(foreign, records=CheckedRecords(tmp_path / "checked", foreign))
    with pytest.raises(Refusal) as exc:
        stranger.check_keyed(body)  # checked in full under its own anchors: not theirs
    assert exc.value.reason is Reason.CERT_UNTRUSTED
    assert stranger.records is not None and stranger.records.hits == 0
    assert len(list((tmp_path / "checked").glob("*/*/*"))) == 1  # the door's record was there to be misread


def test_a_damaged_or_half_written_record_is_a_miss(kit: TestPKI, tmp_path: Path) -> None:
    door, recipient = two_processes(kit, tmp_path)
    body = kit.envelope(A, [B])
    door.check(body)
    [record] = (tmp_path / generation(door.verifier)).glob("*/*")
    record.write_bytes(record.read_bytes()[:100])  # a writer still at work, or a damaged file
    assert recipient.check_keyed(body)[0].sender.organ_id == A  # checked in full
    assert recipient.records is not None and recipient.records.hits == 0


def test_records_live_one_to_two_buckets_and_older_ones_are_swept(kit: TestPKI, tmp_path: Path) -> None:
    now = [1_000 * BUCKET_SECONDS + 1.0]
    verifier = kit.verifier()
    records = CheckedRecords(tmp_path, verifier, clock=lambda: now[0])
    door = DeliveryChecks(verifier, records=records)
    old = kit.envelope(A, [B], subject="cũ")
    door.check(old)
    reader = CheckedRecords(tmp_path, verifier, clock=lambda: now[0])
    key = hashlib.sha256(old).digest()
    now[0] += BUCKET_SECONDS
    assert reader.get(key) is not None  # the previous bucket is still read
    now[0] += BUCKET_SECONDS
    assert reader.get(key) is None  # two buckets on: gone for readers
    door.check(kit.envelope(A, [B], subject="mới"))  # the first write into a new bucket sweeps
    assert sorted(p.name for p in records.dir.iterdir()) == [str(1_002)]
    stale = tmp_path / "0123456789abcdef"  # another (old) policy's records
    stale.mkdir()
    os.utime(stale, (now[0] - 3 * BUCKET_SECONDS,) * 2)
    now[0] += BUCKET_SECONDS
    door.check(kit.envelope(A, [B], subject="sau"))
    assert not stale.exists() and records.dir.exists()


def test_records_are_never_written_without_their_root(kit: TestPKI, tmp_path: Path) -> None:
    """Only records_root() makes (and checks) the root: a root removed meanwhile is not re-created by a write."""
    verifier = kit.verifier()
    checks = DeliveryChecks(verifier, records=CheckedRecords(tmp_path / "gone", verifier))
    assert checks.check(kit.envelope(A, [B])).sender.organ_id == A
    assert not (tmp_path / "gone").exists()


def test_an_unwritable_directory_only_costs_the_full_check(kit: TestPKI, tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    verifier = kit.verifier()
    checks = DeliveryChecks(verifier, records=CheckedRecords(blocked, verifier))
    body = kit.envelope(A, [B])
    assert checks.check(body).sender.organ_id == A
    assert DeliveryChecks(verifier, records=CheckedRecords(blocked, verifier)).check_keyed(body)[0].sender.organ_id == A


def test_revive_rebuilds_every_nested_record_of_the_model() -> None:
    import orjson

    msg = envelope.new_document(A, [B, "000.00.00.H02"], "Về việc", doc_type=3,
                                related_document_id="000.00.00.G01,2019/01/01,1")
    msg = dataclasses.replace(msg, other_info=envelope.OtherInfo(priority="1", appendixes=("a", "b")),
                              trace_headers=(envelope.TraceHeader(A, "2019/05/10 08:00:00"),))
    assert revive(envelope.DocumentMessage, orjson.loads(orjson.dumps(msg))) == msg


def test_records_live_in_shared_memory_in_a_directory_only_this_user_can_use(tmp_path: Path) -> None:
    shm, work = tmp_path / "shm", tmp_path / "work"
    shm.mkdir()
    work.mkdir()
    root = records_root(work, shm)
    assert root is not None and root.parent == shm and root.name.startswith(f"axis-checked-{os.getuid()}-")
    assert root.stat().st_mode & 0o777 == 0o700
    assert records_root(work, shm) == root  # the same for every host process of the work directory
    assert records_root(tmp_path / "another", shm) != root
    root.chmod(0o777)  # opened to others (or made by someone else): not used
    assert records_root(work, shm) is None
    root.rmdir()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    root.symlink_to(tmp_path / "elsewhere")  # a link planted where the directory goes: not followed
    assert records_root(work, shm) is None
    assert records_root(work, tmp_path / "no-shm") == work / "checked"  # no shared memory: the work directory


def test_records_of_ended_runs_are_removed_from_shared_memory(kit: TestPKI, tmp_path: Path) -> None:
    now = [1_000 * BUCKET_SECONDS + 1.0]
    shm = tmp_path / "shm"
    shm.mkdir()
    root = records_root(tmp_path / "work", shm)
    assert root is not None
    ended, running, foreign = (shm / f"axis-checked-{os.getuid()}-ended", shm / f"axis-checked-{os.getuid()}-running",
                               shm / "something-else")
    for d in (ended / "gen" / "999", running / "gen" / "1000", foreign):
        d.mkdir(parents=True)
    for d in (ended, ended / "gen", foreign):
        os.utime(d, (now[0] - 4 * BUCKET_SECONDS,) * 2)
    for d in (running, running / "gen"):
        os.utime(d, (now[0] - 4 * BUCKET_SECONDS,) * 2)
    os.utime(running / "gen", (now[0] - 60,) * 2)  # a bucket made a minute ago: still in use
    verifier = kit.verifier()
    DeliveryChecks(verifier, records=CheckedRecords(root, verifier, clock=lambda: now[0])).check(kit.envelope(A, [B]))
    assert sorted(p.name for p in shm.iterdir()) == sorted([root.name, running.name, foreign.name])


def test_a_slot_removed_meanwhile_is_made_again_by_the_next_record(kit: TestPKI, tmp_path: Path) -> None:
    """The slot is made on the first write that misses it, also after it was removed under a running process."""
    verifier = kit.verifier()
    records = CheckedRecords(tmp_path, verifier)
    door = DeliveryChecks(verifier, records=records)
    first, second = kit.envelope(A, [B], subject="một"), kit.envelope(A, [B], subject="hai")
    door.check(first)
    shutil.rmtree(records.dir)
    door.check(second)
    reader = CheckedRecords(tmp_path, kit.verifier())
    assert reader.get(hashlib.sha256(second).digest()) is not None
    assert reader.get(hashlib.sha256(first).digest()) is None
