"""Directory: validation with clear errors, O(1) lookups, and the 120,000-agency scale."""

from __future__ import annotations

import tracemalloc

import pytest

from axis.core.directory import Agency, Directory, DirectoryError, Server, valid_agency_code


def small() -> Directory:
    return Directory.from_records(
        [("d1", "dedicated"), ("d2", "dedicated"), ("sh", "shared")],
        [
            ("000.00.00.G22", "Government Office", "d1"),
            ("000.00.00.H53", "Tay Ninh", "d2"),
            ("000.00.00.G01", "Public Security", "sh"),
            ("H55.242", "Thai Nguyen commune", "sh"),
        ],
    )


@pytest.mark.parametrize(
    "code", ["000.00.00.G22", "000.00.13.H53", "28.22.H17", "H55.242", "G22", "H55.242.1A.07"]
)
def test_valid_codes(code: str) -> None:
    assert valid_agency_code(code)


@pytest.mark.parametrize(
    "code", ["", "g22", "000.00.00.g22", "000.00.00.G2", "000..00.G22", "000.00.00.G22.", " 000.00.00.G22",
             "H55." + "1" * 40, "ABC", "000.00.00.GG2", "000/00/00/G22"]
)
def test_malformed_codes(code: str) -> None:
    assert not valid_agency_code(code)


def test_lookups_and_counts() -> None:
    d = small()
    assert d.agency("000.00.00.G22") == Agency("000.00.00.G22", "Government Office", "d1")
    assert d.server_of("H55.242") == Server("sh", "shared")
    assert d.server("d2").kind == "dedicated"
    assert d.agency("000.00.00.G99") is None and d.server_of("000.00.00.G99") is None
    assert d.agencies_on("sh") == ("000.00.00.G01", "H55.242")
    assert d.counts() == {"agencies": 4, "dedicated": 2, "shared": 2, "servers": 3,
                          "dedicated_servers": 2, "shared_servers": 1}
    assert len(d) == 4 and "H55.242" in d
    with pytest.raises(TypeError):
        d.agencies["X"] = None  # type: ignore[index]


@pytest.mark.parametrize(
    ("servers", "agencies", "message"),
    [
        ([("d1", "dedicated")], [("000.00.00.G22", "a", "nope")], "unknown server 'nope'"),
        ([("sh", "shared")], [("000.00.00.G22", "a", "sh"), ("000.00.00.G22", "b", "sh")], "duplicate agency"),
        ([("sh", "shared")], [("bad code", "a", "sh")], "malformed agency code"),
        ([("d1", "dedicated")], [("000.00.00.G22", "a", "d1"), ("000.00.00.G01", "b", "d1")], "dedicated server d1"),
        ([("d1", "dedicated"), ("d1", "shared")], [], "duplicate server id"),
        ([("d1", "cloud")], [], "kind 'cloud'"),
        ([("D 1", "shared")], [], "malformed"),
    ],
)
def test_validation_errors(servers, agencies, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DirectoryError, match=message):
        Directory.from_records(servers, agencies)


@pytest.mark.slow
def test_120k_agencies_fit() -> None:
    n_shared = 200
    servers = [(f"sh{i}", "shared") for i in range(n_shared)] + [(f"d{i}", "dedicated") for i in range(20_000)]
    agencies = [(f"{i // 10000:03d}.{i // 100 % 100:02d}.{i % 100:02d}.H{i % 97:02d}", f"Agency {i}",
                 f"d{i}" if i < 20_000 else f"sh{i % n_shared}") for i in range(120_000)]
    tracemalloc.start()
    d = Directory.from_records(servers, agencies)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(d) == 120_000
    assert d.counts()["dedicated"] == 20_000 and d.counts()["shared"] == 100_000
    assert d.server_of(agencies[119_999][0]).id == agencies[119_999][2]  # type: ignore[union-attr]
    # Memory is deterministic enough to assert; load time is measured by bench/directory.py, not here.
    assert peak < 200e6
