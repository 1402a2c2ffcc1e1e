"""The streaming verifier (axis.core.streamverify) against the inline one (axis.core.verify): the same outcome and
reason on the real samples, the hostile corpus and mutated envelopes, whatever the chunk size; bounded memory on a
big document."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axis.core.reasons import Reason, Refusal
from axis.core.streamverify import MAX_TEXT, verify_stream
from axis.core.verify import Verifier
from tests.core.test_verify_differential import Kit, mutated
from tests.support.testing import hostile_corpus, make_edxml, make_pki

A, B = "000.00.00.G22", "000.00.00.H41"
LIMIT = 50 * 1024 * 1024


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def inline(verifier: Verifier, data: bytes) -> str:
    try:
        v = verifier.verify(data)
    except Refusal as r:
        return r.reason.value
    return f"ok:{v.signer}"


def streamed(verifier: Verifier, data: bytes, size: int = 4096) -> str:
    try:
        v, _ = verify_stream(verifier, chunks(data, size), max_bytes=LIMIT)
    except Refusal as r:
        return r.reason.value
    return f"ok:{v.signer}"


@pytest.fixture(scope="module", params=["rsa", "ec"])
def kit(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return Kit(make_pki(tmp_path_factory.mktemp("pki"), [A, B], algorithm=request.param))


@pytest.mark.parametrize("size", [1, 7, 4096, 1 << 20])
def test_valid_envelopes_verify_at_any_chunk_size(kit: Kit, size: int) -> None:
    for base in kit.bases:
        assert streamed(kit.fast, base, size) == inline(kit.fast, base) == f"ok:{base and kit.fast.verify(base).signer}"


def test_same_digest_and_model_as_inline(kit: Kit) -> None:
    import hashlib

    data = kit.bases[0]
    v, facts = verify_stream(kit.fast, chunks(data, 333), max_bytes=LIMIT)
    assert v.sha256 == hashlib.sha256(data).hexdigest() and v.size == len(data) and facts is not None
    from axis.core import envelope

    small = envelope.from_element(v.root)
    full = envelope.from_element(kit.fast.verify(data).root)
    assert isinstance(small, envelope.DocumentMessage) and isinstance(full, envelope.DocumentMessage)
    assert (small.sender, small.document_id, small.recipients, small.subject) == (
        full.sender, full.document_id, full.recipients, full.subject)
    assert [a.content_id for a in small.attachments] == [a.content_id for a in full.attachments]


def test_hostile_corpus_same_reasons(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, [A, B])
    corpus = hostile_corpus(pki)
    verifier = pki.verifier()
    for name, data, reason in corpus:
        expected = inline(verifier, data)
        assert expected == reason.value, name
        assert streamed(verifier, data) == expected, name


def test_samples_same_outcome(samples_dir: Path, tmp_path: Path) -> None:
    pki = make_pki(tmp_path, [A, B], algorithm="ec")
    verifier, lenient = pki.verifier(), pki.verifier(require_signature=False)
    files = sorted(samples_dir.glob("*.edxml"))
    assert files
    for f in files:
        data = f.read_bytes()
        assert streamed(verifier, data) == inline(verifier, data), f.name
        assert streamed(lenient, data) == inline(lenient, data), f.name
        resigned = pki.sign(data, A) if inline(lenient, data).startswith("ok") else None
        if resigned is not None and inline(verifier, resigned).startswith("ok"):
            assert streamed(verifier, resigned, 97) == inline(verifier, resigned), f.name


@settings(max_examples=int(os.environ.get("AXIS_DIFF_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(data=st.data())
def test_mutated_envelopes_same_outcome(kit: Kit, data: st.DataObject) -> None:
    doc = data.draw(mutated(kit.bases))
    size = data.draw(st.sampled_from([5, 64, 4096, 1 << 20]))
    expected, got = inline(kit.fast, doc), streamed(kit.fast, doc, size)
    if got != expected and os.environ.get("AXIS_DIFF_DUMP"):
        Path(os.environ["AXIS_DIFF_DUMP"]).write_bytes(doc)
    assert got == expected


def test_big_attachment_verifies_with_bounded_tree(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, [A, B])
    verifier = Verifier(pki.policy(max_bytes=LIMIT))
    data = pki.sign(make_edxml(A, [B], size=3 * 1024 * 1024), A)  # one attachment text of ~3 MB
    assert streamed(verifier, data, 65536) == inline(verifier, data) == f"ok:{A}"
    v, _ = verify_stream(verifier, chunks(data, 65536), max_bytes=LIMIT)
    texts = sum(len(el.text or "") for el in v.root.iter())
    assert texts < 100_000  # the attachment's content is not in the small tree
    tampered = data.replace(b"AAAA", b"AAAB", 1) if b"AAAA" in data else data[:-200] + b"B" + data[-199:]
    assert streamed(verifier, tampered, 65536) == inline(verifier, tampered)


def test_limits_and_doctype_across_chunks(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, [A, B])
    verifier = pki.verifier()
    data = pki.envelope(A, [B])
    with pytest.raises(Refusal) as too_large:
        verify_stream(verifier, chunks(data, 1000), max_bytes=len(data) - 1)
    assert too_large.value.reason is Reason.TOO_LARGE
    doctype = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'
    for size in (1, 3, 5, 100):
        assert streamed(verifier, doctype, size) == Reason.XML_FORBIDDEN.value
    utf16 = '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'.encode("utf-16")
    assert streamed(verifier, utf16, 5) == inline(verifier, utf16) == Reason.XML_FORBIDDEN.value  # not a byte match
    assert streamed(verifier, b"") == inline(verifier, b"")
    assert streamed(verifier, b"<a>") == inline(verifier, b"<a>") == Reason.XML_MALFORMED.value


def test_big_text_outside_attachments_is_too_large(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, [A, B])
    verifier = pki.verifier()
    data = make_edxml(A, [B], subject="x" * (MAX_TEXT + 10))
    assert streamed(verifier, pki.sign(data, A), 65536) == Reason.TOO_LARGE.value


@pytest.mark.parametrize("encoding", ["windows-1258", "utf-16", "iso-8859-1"])
def test_other_encodings_read_as_the_inline_parser_reads_them(tmp_path: Path, encoding: str) -> None:
    pki = make_pki(tmp_path, [A, B])
    verifier = pki.verifier()
    text = pki.envelope(A, [B], size=3000).decode()
    data = text.replace("encoding='UTF-8'", f"encoding='{encoding}'").encode(encoding, "xmlcharrefreplace")
    assert streamed(verifier, data, 7) == inline(verifier, data) == f"ok:{A}"
    tampered = text.replace("encoding='UTF-8'", f"encoding='{encoding}'").replace("Hà Nội", "Ha Noi", 1).encode(
        encoding, "xmlcharrefreplace")
    assert tampered != data and streamed(verifier, tampered, 7) == inline(verifier, tampered) == "SIGNATURE_INVALID"


@pytest.mark.parametrize("version", ["0.0", "2.0", "1.1", "1.0"])
def test_xml_declaration_versions_as_the_inline_parser(tmp_path: Path, version: str) -> None:
    pki = make_pki(tmp_path, [A, B])
    verifier = pki.verifier()
    data = pki.envelope(A, [B], size=3000).replace(b"version='1.0'", f"version='{version}'".encode(), 1)
    assert streamed(verifier, data, 7) == inline(verifier, data)


S = b"<Subject>"
EDGES = {  # well-formedness corners where two conforming parsers could disagree
    "standalone maybe": (b"encoding='UTF-8'?>", b"encoding='UTF-8' standalone='maybe'?>"),
    "standalone yes": (b"encoding='UTF-8'?>", b"encoding='UTF-8' standalone='yes'?>"),
    "bogus encoding": (b"encoding='UTF-8'", b"encoding='bogus-enc'"),
    "control char": (S, S + b"\x0c"), "surrogate in UTF-8": (S, S + b"\xed\xa0\x80"), "overlong": (S, S + b"\xc0\xaf"),
    "char ref 0": (S, S + b"&#0;"), "char ref surrogate": (S, S + b"&#xD800;"), "char ref FFFE": (S, S + b"&#xFFFE;"),
    "U+FFFE": (S, S + "\ufffe".encode()), "NUL": (S, S + b"\x00"), "]]> in text": (S, S + b"]]>"),
    "duplicate attribute": (b'<edXMLManifest version="1.0"', b'<edXMLManifest version="1.0" version="2"'),
    "xml prefix rebound": (b"<edXMLBody>", b'<edXMLBody xmlns:xml="urn:x">'),
    "xmlns prefix declared": (b"<edXMLBody>", b'<edXMLBody xmlns:xmlns="urn:x">'),
    "undeclared prefix": (b"<edXMLBody>", b'<edXMLBody q:a="1">'),
    "empty prefix binding": (b"<edXMLBody>", b'<edXMLBody xmlns:p="">'),
    "< in attribute": (b'version="1.0">', b'version="1<0">'), "tab in tag": (b"<edXMLBody>", b"<edXMLBody\t>"),
    "two colons": (b"<edXMLBody>", b"<edXMLBody a:b:c='1'>"),
    "Latin-1 declared, UTF-8 bytes": (b"encoding='UTF-8'", b"encoding='ISO-8859-1'"),
    "UTF-16 declared, UTF-8 bytes": (b"encoding='UTF-8'", b"encoding='UTF-16'"),
}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_well_formedness_corners_as_the_inline_parser(kit: Kit, name: str) -> None:
    old, new = EDGES[name]
    data = kit.bases[0].replace(old, new, 1)
    assert data != kit.bases[0]
    assert streamed(kit.fast, data, 5) == inline(kit.fast, data)


@pytest.mark.parametrize("wrap", [lambda d: d + b"junk", lambda d: d + b"<x/>", lambda d: d + b"<!-- c -->",
                                  lambda d: b"  " + d, lambda d: b"\xef\xbb\xbf" + d, lambda d: d[d.index(b"<edXML"):]])
def test_around_the_root_as_the_inline_parser(kit: Kit, wrap: object) -> None:
    data = wrap(kit.bases[0])  # type: ignore[operator]
    assert streamed(kit.fast, data, 5) == inline(kit.fast, data)
