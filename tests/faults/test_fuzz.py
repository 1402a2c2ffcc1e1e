"""Fuzzing the doors: random bytes and mutated valid envelopes through the hardened parser, the envelope reader
and the full verifier (what the router and the endpoint run on untrusted bytes). The only exception allowed is a
:class:`Refusal`; every example must finish within a bounded time (hypothesis ``deadline``)."""

from __future__ import annotations

import contextlib
import time
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axis.core import envelope, schema
from axis.core.reasons import Refusal
from axis.core.verify import Verifier
from axis.core.xmlsafe import parse_untrusted
from tests.support.testing import TestPKI, make_edxml, make_pki

A, B = "000.00.00.G22", "000.00.00.H53"
MAX = 256 * 1024
PER_EXAMPLE_MS = 2000  # generous on a shared 2-core machine; a hang or a blow-up takes far longer
SNIPPETS = [b"<!DOCTYPE a [<!ENTITY x 'y'>]>", b"&x;", b"<![CDATA[", b"]]>", b"<!--", b"-->", b"<?pi x?>",
            b"\x00", b"\xff\xfe", b"&#0;", b"&#x110000;", b"xmlns:ds='urn:x'", b"<ds:Signature>", b"</edXML>",
            b"<edXMLHeader>", b"Id=\"x\"", b"URI=\"#x\"", b"\xc3\x28", b"<" * 64, b"a" * 5000]


@cache
def fixture_pki(tmp: str) -> tuple[TestPKI, bytes, Verifier]:
    pki = make_pki(Path(tmp), [A, B], algorithm="ec")
    good = pki.sign(make_edxml(A, [B], size=1500), A)
    return pki, good, pki.verifier(max_bytes=MAX)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestPKI, bytes, Verifier]:
    return fixture_pki(str(tmp_path_factory.mktemp("fuzz-pki")))


def check_all(data: bytes, verifier: Verifier) -> None:
    """Every door on untrusted bytes: only Refusal may escape, in bounded time."""
    t0 = time.monotonic()
    for door in (lambda: parse_untrusted(data, max_bytes=MAX), lambda: envelope.parse(data, max_bytes=MAX),
                 lambda: verifier.verify(data)):
        with contextlib.suppress(Refusal):
            door()
    with contextlib.suppress(Refusal):
        schema.validate(parse_untrusted(data, max_bytes=MAX))
    assert time.monotonic() - t0 < PER_EXAMPLE_MS / 1000


@st.composite
def mutated(draw: st.DrawFn, good: bytes) -> bytes:
    data = bytearray(good)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "snippet", "dup", "delete"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "snippet":
            data[i:i] = draw(st.sampled_from(SNIPPETS))
        elif op == "dup":
            j = draw(st.integers(i, min(len(data), i + 400)))
            data[i:i] = data[i:j]
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 64))]
    return bytes(data)


FUZZ = settings(max_examples=150, deadline=PER_EXAMPLE_MS, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                                    HealthCheck.too_slow])


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_only_refusals(corpus: tuple[TestPKI, bytes, Verifier], data: bytes) -> None:
    check_all(data, corpus[2])


@FUZZ
@given(data=st.data())
def test_mutated_envelopes_only_refusals(corpus: tuple[TestPKI, bytes, Verifier], data: st.DataObject) -> None:
    _, good, verifier = corpus
    blob = data.draw(mutated(good))
    check_all(blob, verifier)
    if blob != good:
        # a mutated envelope must never verify as the original document with different content
        try:
            v = verifier.verify(blob)
        except Refusal:
            return
        assert envelope.from_element(v.root) == envelope.from_element(verifier.verify(good).root)


def test_the_valid_envelope_itself_verifies(corpus: tuple[TestPKI, bytes, Verifier]) -> None:
    _, good, verifier = corpus
    assert verifier.verify(good).signer == A
