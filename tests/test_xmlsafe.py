from __future__ import annotations

import pytest

from axis.reasons import Reason, Refusal
from axis.xmlsafe import parse_head_untrusted, parse_untrusted

HOSTILE = {
    "billion_laughs": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><a>&lol2;</a>',
        Reason.XML_FORBIDDEN,
    ),
    "quadratic_blowup": (
        b'<!DOCTYPE a [<!ENTITY x "' + b"x" * 10000 + b'">]><a>' + b"&x;" * 1000 + b"</a>",
        Reason.XML_FORBIDDEN,
    ),
    "xxe_file": (
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
        Reason.XML_FORBIDDEN,
    ),
    "xxe_url": (
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><a>&x;</a>',
        Reason.XML_FORBIDDEN,
    ),
    "external_dtd": (b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/x.dtd"><a/>', Reason.XML_FORBIDDEN),
    "parameter_entity": (
        b'<!DOCTYPE a [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><a/>',
        Reason.XML_FORBIDDEN,
    ),
    "undeclared_entity": (b"<a>&foo;</a>", Reason.XML_MALFORMED),
    "mismatched_tags": (b"<a><b></a>", Reason.XML_MALFORMED),
    "wrong_encoding": ('<?xml version="1.0" encoding="UTF-8"?><a>é</a>'.encode("latin-1"), Reason.XML_MALFORMED),
    "empty": (b"", Reason.XML_MALFORMED),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_is_refused(name: str) -> None:
    data, reason = HOSTILE[name]
    with pytest.raises(Refusal) as info:
        parse_untrusted(data)
    assert info.value.reason is reason


def test_size_limit_is_checked_before_parsing() -> None:
    with pytest.raises(Refusal) as info:
        parse_untrusted(b"<a>" + b"x" * 2000 + b"</a>", max_bytes=1000)
    assert info.value.reason is Reason.TOO_LARGE


def test_malformed_detail_names_the_line() -> None:
    with pytest.raises(Refusal) as info:
        parse_untrusted(b"<a>\n<b>\n</a>")
    assert info.value.detail.startswith("line ")


def test_well_formed_parses() -> None:
    assert parse_untrusted("<a>Hà Nội</a>".encode()).text == "Hà Nội"


def test_malformed_sample_names_its_line(samples_dir) -> None:
    with pytest.raises(Refusal) as info:
        parse_untrusted((samples_dir / "edoc.edxml").read_bytes())
    assert info.value.reason is Reason.XML_MALFORMED
    assert "line 74" in info.value.detail


@pytest.mark.parametrize("name", sorted(set(HOSTILE) - {"empty"}))
def test_hostile_input_is_refused_by_the_head_parser_too(name: str) -> None:
    data, reason = HOSTILE[name]
    with pytest.raises(Refusal) as info:
        parse_head_untrusted(data, "never")
    assert info.value.reason is reason


def test_head_parser_stops_at_the_element_and_checks_the_size_first() -> None:
    data = b"<a><head><x>1</x></head>" + b"<tail>" * 5000 + b"<broken"  # never read past </head>
    head = parse_head_untrusted(data, "head", chunk=64)
    assert head is not None and head.findtext("x") == "1"
    assert parse_head_untrusted(b"<a><b/></a>", "head") is None
    with pytest.raises(Refusal) as info:
        parse_head_untrusted(data, "head", max_bytes=100)
    assert info.value.reason is Reason.TOO_LARGE


def test_document_head_is_the_header_of_the_full_model() -> None:
    import dataclasses

    from axis import envelope

    msg = envelope.new_document("000.00.00.G22", ["000.00.00.H41", "000.00.00.G01"], "Về việc X",
                                number="12", notation="VPCP-TTĐT", date="2019-03-12", doc_type=1,
                                related_document_id="000.00.00.G22,2019/03/01,3/VPCP")
    data = envelope.build(msg)
    head = envelope.document_head(data)
    full = envelope.parse(data)
    assert isinstance(full, envelope.DocumentMessage)
    assert head == dataclasses.replace(full, attachments=(), trace_headers=(), business=envelope.Business())
    status = envelope.build(envelope.new_status("000.00.00.H41", full, "03"))
    with pytest.raises(Refusal):
        envelope.document_head(status)
