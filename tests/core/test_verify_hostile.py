"""The hostile corpus (tests.support.testing.hostile_corpus) through both verifiers: each item refused for its exact
reason."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from axis.core.reasons import Reason, Refusal
from axis.core.verify import Verified
from tests.support.testing import TestPKI, hostile_corpus, make_pki
from tests.support.verify_reference import ReferenceVerifier

A, B = "000.00.00.G22", "000.00.00.H41"
MAX = 200_000

#: The reasons verification can give (section 2 minus the directory/auth/schema ones).
# the verifier's reasons: not the directory's, the door's, or the evidence log's (proofs and tree heads)
VERIFY_REASONS = set(Reason) - {Reason.SCHEMA_INVALID, Reason.UNKNOWN_SENDER, Reason.UNKNOWN_RECIPIENT,
                                Reason.UNAUTHORIZED, Reason.FORBIDDEN, Reason.PROOF_INVALID, Reason.STH_INVALID}


@pytest.fixture(scope="module", params=["rsa", "ec"])
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[TestPKI, list[tuple[str, bytes, Reason]]]:
    kit = make_pki(tmp_path_factory.mktemp("pki"), [A, B], algorithm=request.param)
    return kit, hostile_corpus(kit, max_bytes=MAX)


def _outcomes(verify: Callable[[bytes], Verified], items: list[tuple[str, bytes, Reason]]) -> dict[str, str]:
    out = {}
    for name, data, _ in items:
        try:
            verify(data)
            out[name] = "ACCEPTED"
        except Refusal as refusal:
            out[name] = refusal.reason.value
    return out


def test_corpus_covers_every_verification_reason(corpus: tuple[TestPKI, list[tuple[str, bytes, Reason]]]) -> None:
    _, items = corpus
    assert {reason for _, _, reason in items} == VERIFY_REASONS
    assert len({name for name, _, _ in items}) == len(items)


def test_fast_path_refuses_each_item_for_its_reason(corpus: tuple[TestPKI, list[tuple[str, bytes, Reason]]]) -> None:
    kit, items = corpus
    got = _outcomes(kit.verifier(max_bytes=MAX).verify, items)
    assert got == {name: reason.value for name, _, reason in items}


def test_reference_refuses_each_item_for_its_reason(corpus: tuple[TestPKI, list[tuple[str, bytes, Reason]]]) -> None:
    kit, items = corpus
    got = _outcomes(ReferenceVerifier(kit.policy(max_bytes=MAX)).verify, items)
    assert got == {name: reason.value for name, _, reason in items}


def test_the_untampered_original_is_accepted(corpus: tuple[TestPKI, list[tuple[str, bytes, Reason]]]) -> None:
    """The corpus is built from a valid envelope: guard against tests that pass because everything fails."""
    kit, _ = corpus
    data = kit.envelope(A, [B], size=4000)
    assert kit.verifier(max_bytes=MAX).verify(data).signer == A
    assert ReferenceVerifier(kit.policy(max_bytes=MAX)).verify(data).signer == A


def test_refusal_details_are_human_readable(corpus: tuple[TestPKI, list[tuple[str, bytes, Reason]]]) -> None:
    kit, items = corpus
    verifier = kit.verifier(max_bytes=MAX)
    for _, data, _ in items:
        with pytest.raises(Refusal) as exc:
            verifier.verify(data)
        assert exc.value.detail and "Traceback" not in exc.value.detail


# ---- comments, CDATA sections and PIs inside every value the axis reads ------------------------------------------
#
# Each value of a fully populated document (signed by A) and status (signed by B) is split by a comment, a CDATA
# section, both, or a PI, and signed that way. Exclusive C14N drops the comment, so the signature is valid and the
# axis must read the whole value (the CVE-2017-11427 class: a reader that stops at the comment reads something
# other than what was signed). A PI is signed too but refused: XML_FORBIDDEN.

SPLIT_VARIANTS = ("comment", "cdata", "comment+cdata", "comment-first", "pi")


@pytest.fixture(scope="module")
def split_corpus(corpus: tuple[TestPKI, list[tuple[str, bytes, Reason]]]) -> list[tuple[str, bytes, object]]:
    """(name, signed bytes, expected): the expected message, or the Reason for PIs."""
    from axis.core import envelope as env
    from tests.core.test_comment_truncation import FULL_DOCUMENT, FULL_STATUS, leaves, sign_as_written, split_value

    kit, _ = corpus
    items: list[tuple[str, bytes, object]] = []
    for kind, msg, signer in (("document", FULL_DOCUMENT, A), ("status", FULL_STATUS, B)):
        clean = env.build(msg)
        for path in leaves(clean):
            for variant in SPLIT_VARIANTS:
                signed = sign_as_written(kit, split_value(clean, path, variant), signer)
                items.append((f"{kind}:{path}:{variant}", signed, Reason.XML_FORBIDDEN if variant == "pi" else msg))
    return items


@pytest.mark.parametrize("which", ["fast", "reference"])
def test_values_split_by_comments_cdata_or_pis(corpus: tuple[TestPKI, list[tuple[str, bytes, Reason]]],
                                               split_corpus: list[tuple[str, bytes, object]], which: str) -> None:
    kit, _ = corpus
    verify = kit.verifier().verify if which == "fast" else ReferenceVerifier(kit.policy()).verify
    wrong = {}
    for name, data, expected in split_corpus:
        try:
            got: object = verify(data).message
        except Refusal as refusal:
            got = refusal.reason
        if got != expected:
            wrong[name] = got if isinstance(got, Reason) else "ACCEPTED, read differently"
    assert not wrong, wrong
    assert {n.split(":")[1] for n, _, _ in split_corpus} >= {
        "edXMLEnvelope/edXMLHeader/MessageHeader/From/OrganId", "edXMLEnvelope/edXMLHeader/MessageHeader/DocumentId",
        "edXMLEnvelope/edXMLHeader/MessageHeader/StatusCode"}
