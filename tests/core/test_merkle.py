"""axis.core.merkle against RFC 9162 section 2.1, written out recursively here (the reference), and the RFC's own
verification algorithms: every size 1..70, every leaf and every (first, second) pair, tampered proofs refused."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axis.core import merkle
from axis.core.merkle import (
    EMPTY_ROOT,
    ListSource,
    consistency_path,
    inclusion_path,
    leaf_hash,
    mth,
    node_hash,
    range_root,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

MAX = 70


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(f"leaf {i}".encode()) for i in range(n)]


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[n]) as written."""
    n = len(d)
    if n == 1:
        return []
    k = merkle.split(n)
    if m < k:
        return [*ref_path(m, d[:k]), mth(d[k:])]
    return [*ref_path(m - k, d[k:]), mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1 SUBPROOF(m, D[n], b) as written."""
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = merkle.split(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), mth(d[:k])]


class CountingSource(ListSource):
    def __init__(self, hashes: list[bytes]) -> None:
        super().__init__(hashes)
        self.lookups = 0

    def perfect(self, level: int, index: int) -> bytes:
        self.lookups += 1
        return super().perfect(level, index)


ALL = leaves(MAX)
SRC = ListSource(ALL)


def test_hash_primitives() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    assert mth([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert tree_root(SRC, 0) == EMPTY_ROOT
    # the RFC 6962 test vectors' empty tree and one-leaf tree
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


def test_rfc6962_vectors() -> None:
    # certificate-transparency-go/merkle testdata: 8 leaves, their roots for every size
    data = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f")]
    roots = ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
             "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
             "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
             "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
             "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
             "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
             "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
    hashes = [leaf_hash(x) for x in data]
    src = ListSource(hashes)
    for n in range(1, 9):
        assert mth(hashes[:n]).hex() == roots[n - 1]
        assert tree_root(src, n).hex() == roots[n - 1]


@pytest.mark.parametrize("n", range(1, MAX + 1))
def test_inclusion_every_leaf(n: int) -> None:
    d = ALL[:n]
    root = mth(d)
    assert tree_root(SRC, n) == root
    for m in range(n):
        path = inclusion_path(SRC, m, n)
        assert path == ref_path(m, d)
        assert verify_inclusion(d[m], m, n, path, root)
        # tampered: wrong leaf, index, size, root, one path element, a path element dropped or added
        assert not verify_inclusion(ALL[n] if n < MAX else b"\x00" * 32, m, n, path, root)
        assert not verify_inclusion(d[m], m, n, path, node_hash(root, root))
        if n > 1:
            assert not verify_inclusion(d[m], (m + 1) % n, n, path, root)
        for i in range(len(path)):
            bad = list(path)
            bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
            assert not verify_inclusion(d[m], m, n, bad, root)
        if path:
            assert not verify_inclusion(d[m], m, n, path[:-1], root)
        assert not verify_inclusion(d[m], m, n, [*path, root], root)
    assert not verify_inclusion(d[0], n, n, [], root)
    assert not verify_inclusion(d[0], -1, n, [], root)


@pytest.mark.parametrize("second", range(1, MAX + 1))
def test_consistency_every_pair(second: int) -> None:
    d = ALL[:second]
    second_root = mth(d)
    for first in range(1, second + 1):
        first_root = mth(d[:first])
        path = consistency_path(SRC, first, second)
        assert path == ([] if first == second else ref_subproof(first, d, True))
        assert verify_consistency(first, second, first_root, second_root, path)
        assert not verify_consistency(first, second, node_hash(first_root, first_root), second_root, path)
        assert not verify_consistency(first, second, first_root, node_hash(second_root, second_root), path)
        for i in range(len(path)):
            bad = list(path)
            bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
            assert not verify_consistency(first, second, first_root, second_root, bad)
        if path:
            assert not verify_consistency(first, second, first_root, second_root, path[:-1])
        assert not verify_consistency(first, second, first_root, second_root, [*path, first_root])
        if first < second - 1:
            assert not verify_consistency(first + 1, second, first_root, second_root, path)
    assert consistency_path(SRC, 0, second) == []
    assert verify_consistency(0, second, EMPTY_ROOT, second_root, [])
    assert not verify_consistency(0, second, second_root, second_root, [])
    assert not verify_consistency(second, second, second_root, second_root, [second_root])
    assert not verify_consistency(second + 1, second, second_root, second_root, [])


@pytest.mark.parametrize("n", [1, 2, 3, 64, 65, 1000, 1023, 1024, 1025, 4097])
def test_logarithmic_lookups(n: int) -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    src = CountingSource(hashes)
    bound = 2 * n.bit_length() + 2
    for m in {0, n // 3, n // 2, n - 1}:
        src.lookups = 0
        inclusion_path(src, m, n)
        assert src.lookups <= bound
    for first in {1, n // 3, n // 2, n - 1}:
        if first > 0:
            src.lookups = 0
            consistency_path(src, first, n)
            assert src.lookups <= bound
    src.lookups = 0
    assert tree_root(src, n) == mth(hashes)
    assert src.lookups <= n.bit_length()


def test_range_alignment_and_bounds() -> None:
    with pytest.raises(ValueError):
        range_root(SRC, 1, 3)  # [1, 3) is no subtree of RFC 9162's recursion
    with pytest.raises(ValueError):
        range_root(SRC, 4, 4)
    assert range_root(SRC, 4, 7) == mth(ALL[4:7])
    with pytest.raises(ValueError):
        inclusion_path(SRC, 5, 5)
    with pytest.raises(ValueError):
        consistency_path(SRC, 6, 5)
    with pytest.raises(IndexError):
        SRC.perfect(0, MAX)


def test_verifiers_refuse_malformed_paths() -> None:
    d = ALL[:5]
    path = inclusion_path(SRC, 2, 5)
    assert not verify_inclusion(d[2], 2, 5, [p[:31] for p in path], mth(d))
    assert not verify_inclusion(d[2], 2, 5, [*path, *([b"\x00" * 32] * 70)], mth(d))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=300), st.data())
def test_property_proofs(raw: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(x) for x in raw]
    n = len(hashes)
    src = ListSource(hashes)
    m = data.draw(st.integers(0, n - 1))
    size = data.draw(st.integers(m + 1, n))
    root = mth(hashes[:size])
    assert tree_root(src, size) == root
    path = inclusion_path(src, m, size)
    assert path == ref_path(m, hashes[:size])
    assert verify_inclusion(hashes[m], m, size, path, root)
    first = data.draw(st.integers(1, size))
    proof = consistency_path(src, first, size)
    assert verify_consistency(first, size, mth(hashes[:first]), root, proof)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[i] = hashlib.sha256(bad[i]).digest()
        assert not verify_consistency(first, size, mth(hashes[:first]), root, bad)
    if path:
        i = data.draw(st.integers(0, len(path) - 1))
        bad = list(path)
        bad[i] = hashlib.sha256(bad[i]).digest()
        assert not verify_inclusion(hashes[m], m, size, bad, root)
