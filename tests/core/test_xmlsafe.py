from __future__ import annotations

import pytest

from axis.core.reasons import Reason, Refusal
from axis.core.xmlsafe import parse_head_untrusted, parse_untrusted

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

    from axis.core import envelope

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


# ---- the tree is the signed view: no comments, CDATA merged, no PIs inside the root ---------------------------------


def test_comments_are_dropped_and_the_text_around_them_joined() -> None:
    root = parse_untrusted(b"<a><b>000.00.00.G23<!-- x -->.1</b>t1<!-- y -->t2<c><!---->v</c><!-- z --></a>")
    b, c = root
    assert b.text == "000.00.00.G23.1" and len(b) == 0  # one text node: what exclusive C14N signs
    assert b.tail == "t1t2"
    assert c.text == "v"
    assert len(root) == 2  # no comment nodes anywhere


def test_cdata_is_merged_into_the_text() -> None:
    root = parse_untrusted(b"<a><b>000.00.00<![CDATA[.G23]]><!-- x -->.1<![CDATA[<&>]]></b></a>")
    assert root[0].text == "000.00.00.G23.1<&>" and len(root[0]) == 0


def test_the_canonical_form_is_the_same_with_or_without_comments() -> None:
    """Dropping comments at parse time changes no digest: exclusive C14N (without comments) ignores them."""
    from lxml import etree

    from axis.core.dsig import exc_c14n

    data = (b'<?xml version="1.0"?><!-- before --><e:a xmlns:e="urn:e"><!-- 1 --><e:b x="1">G23<!-- 2 -->.1'
            b'<![CDATA[ & ]]></e:b>\n  <!-- 3 --><e:c/>tail<!-- 4 --></e:a><!-- after -->')
    keeping = etree.fromstring(data, etree.XMLParser(remove_comments=False))
    assert exc_c14n(parse_untrusted(data)) == exc_c14n(keeping)
    assert b"<!--" not in exc_c14n(keeping)


@pytest.mark.parametrize("data", [
    b"<a><b>000.00.00.G23<?p x?>.1</b></a>",  # inside a value
    b"<a><b>v</b><?p x?></a>",  # between elements
    b"<a><?xml-stylesheet href='x'?><b/></a>",  # first thing in the root
    b"<a><b><c><d>v<?p?></d></c></b></a>",  # deep
    b"<?xml version='1.0'?><!-- c --><a>v<?p?></a>",
])
def test_a_processing_instruction_inside_the_root_is_forbidden(data: bytes) -> None:
    """C14N keeps PIs (they are signed), and ``el.text`` stops at one: refused, whichever parser reads it."""
    with pytest.raises(Refusal) as info:
        parse_untrusted(data)
    assert info.value.reason is Reason.XML_FORBIDDEN and "processing instruction" in info.value.detail
    with pytest.raises(Refusal) as info:
        parse_head_untrusted(data, "b" if b"<b" in data else "a")
    assert info.value.reason is Reason.XML_FORBIDDEN


def test_a_processing_instruction_outside_the_root_is_left_to_the_verifier() -> None:
    """A prolog PI splits no value; the verifier refuses it in a signed document (SIGNATURE_PROFILE)."""
    root = parse_untrusted(b"<?xml version='1.0'?><?xml-stylesheet href='x'?><a>v</a><?after?>")
    assert root.text == "v"


def test_head_parser_drops_comments_too() -> None:
    head = parse_head_untrusted(b"<a><head><x>000.00.00<!-- c -->.G22<![CDATA[!]]></x></head><tail/></a>", "head")
    assert head is not None and head.findtext("x") == "000.00.00.G22!" and len(head[0]) == 0


def test_head_parser_refuses_a_pi_read_before_the_element_ends() -> None:
    with pytest.raises(Refusal) as info:
        parse_head_untrusted(b"<a><?p x?><head><x>v</x></head></a>", "head")
    assert info.value.reason is Reason.XML_FORBIDDEN
