"""The Merkle tree of the evidence log: RFC 9162 section 2.1 with SHA-256 (contract section 5).

- :func:`leaf_hash` ``SHA-256(0x00 || leaf)``, :func:`node_hash` ``SHA-256(0x01 || left || right)``;
- :func:`mth` the reference Merkle Tree Hash of a list of leaf hashes (tests, small trees);
- :func:`range_root`, :func:`inclusion_path`, :func:`consistency_path` computed from a :class:`HashSource` — the
  hashes of *perfect* subtrees (``2**level`` leaves starting at leaf ``index * 2**level``), which a store keeps
  once and never recomputes. Each needs O(log n) lookups; which lookups depends only on the sizes and indices,
  never on the hash values: :func:`inclusion_ranges` / :func:`consistency_ranges` and :func:`perfect_subtrees`
  name them, so that a store fetches them in one query;
- :func:`verify_inclusion` (RFC 9162 2.1.3.2) and :func:`verify_consistency` (2.1.4.2), for anyone who holds
  only a leaf, a proof and two roots.

Pure: hashlib only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: No log holds 2**63 leaves: a proof path is at most this long (the verifiers refuse longer ones).
MAX_PATH = 64


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 2.1.1: ``SHA-256(0x00 || leaf)``."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 2.1.1: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2): where RFC 9162 splits a tree of ``n`` leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """The reference Merkle Tree Hash (RFC 9162 2.1.1) of the leaves whose hashes are given, recursively.

    The empty tree hashes to ``SHA-256("")``. O(n): for tests and small trees; stores use :func:`range_root`.
    """
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = split(n)
    return node_hash(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))


class HashSource(Protocol):
    """Where the hashes of perfect subtrees come from (a store's table, a list in memory)."""

    def perfect(self, level: int, index: int) -> bytes:
        """The hash of the perfect subtree of ``2**level`` leaves starting at leaf ``index * 2**level`` (level 0:
        the leaf hash of leaf ``index``)."""
        ...


def perfect_ranges(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees (level, index) whose leaves, left to right, are exactly ``leaves[start:end]``, largest
    first — the decomposition RFC 9162's recursion makes of that range.

    ``start`` must be a multiple of the power of two at or above ``end - start`` (true of every subtree the
    RFC's recursion reaches, and of ``start == 0``); ValueError otherwise.
    """
    width = end - start
    if start < 0 or width <= 0:
        raise ValueError(f"empty or negative leaf range [{start}, {end})")
    if start & ((1 << (width - 1).bit_length()) - 1):
        raise ValueError(f"leaf range [{start}, {end}) is not aligned as RFC 9162's recursion makes it")
    out = []
    level = width.bit_length()
    while width:
        level -= 1
        if width >> level & 1:
            out.append((level, start >> level))
            start += 1 << level
            width -= 1 << level
    return out


def range_root(src: HashSource, start: int, end: int) -> bytes:
    """MTH(leaves[start:end]) from at most log2(end - start) + 1 perfect subtrees (alignment: see
    :func:`perfect_ranges`)."""
    parts = perfect_ranges(start, end)
    level, index = parts[-1]
    root = src.perfect(level, index)
    for level, index in reversed(parts[:-1]):
        root = node_hash(src.perfect(level, index), root)
    return root


def tree_root(src: HashSource, size: int) -> bytes:
    """MTH of the first ``size`` leaves (``SHA-256("")`` when empty)."""
    if size < 0:
        raise ValueError(f"negative tree size {size}")
    return range_root(src, 0, size) if size else EMPTY_ROOT


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges ``[start, end)`` whose roots make PATH(index, D[0:size]), in path order (leaf upward)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of {size} leaves")
    top_down = []
    lo, hi = 0, size  # the subtree D[lo:hi] that holds the leaf
    while hi - lo > 1:
        k = split(hi - lo)
        if index < lo + k:
            top_down.append((lo + k, hi))
            hi = lo + k
        else:
            top_down.append((lo, lo + k))
            lo += k
    top_down.reverse()
    return top_down


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The leaf ranges ``[start, end)`` whose roots make PROOF(first, D[0:second]), in proof order (RFC 9162
    2.1.4.1); none when ``first == second`` or ``first == 0`` (the empty tree is a prefix of every tree)."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from {first} to {second} leaves")
    if first in (0, second):
        return []
    top_down = []
    lo, hi, complete = 0, second, True  # SUBPROOF(first - lo, D[lo:hi], complete)
    while hi != first:
        k = split(hi - lo)
        if first - lo <= k:
            top_down.append((lo + k, hi))
            hi = lo + k
        else:
            top_down.append((lo, lo + k))
            lo += k
            complete = False
    if not complete:
        top_down.append((lo, hi))
    top_down.reverse()
    return top_down


def perfect_subtrees(ranges: Sequence[tuple[int, int]]) -> set[tuple[int, int]]:
    """Every perfect subtree (level, index) the roots of ``ranges`` need: what a store fetches in one query."""
    return {node for start, end in ranges for node in perfect_ranges(start, end)}


def inclusion_path(src: HashSource, index: int, size: int) -> list[bytes]:
    """RFC 9162 2.1.3.1: PATH(index, D[0:size]), the audit path of leaf ``index`` in the tree of ``size`` leaves
    (from the leaf's sibling up to the root's child)."""
    return [range_root(src, start, end) for start, end in inclusion_ranges(index, size)]


def consistency_path(src: HashSource, first: int, second: int) -> list[bytes]:
    """RFC 9162 2.1.4.1: PROOF(first, D[0:second]) for ``0 < first < second``; empty when ``first == second`` or
    ``first == 0`` (the empty tree is a prefix of every tree)."""
    return [range_root(src, start, end) for start, end in consistency_ranges(first, second)]


def _valid_path(path: Sequence[bytes]) -> bool:
    return len(path) <= MAX_PATH and all(isinstance(p, bytes) and len(p) == HASH_SIZE for p in path)


def verify_inclusion(leaf_hash: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2: whether ``path`` proves the leaf with hash ``leaf_hash`` at ``index`` in the tree of
    ``size`` leaves whose root is ``root``."""
    if not 0 <= index < size or not _valid_path(path):
        return False
    fn, sn = index, size - 1
    r = leaf_hash
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       path: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: whether ``path`` proves that the tree of ``first`` leaves with root ``first_root`` is a
    prefix of the tree of ``second`` leaves with root ``second_root``.

    ``first == second``: the path must be empty and the roots equal. ``first == 0``: the path must be empty and
    ``first_root`` the empty tree's hash.
    """
    if not 0 <= first <= second or not _valid_path(path):
        return False
    if first == second:
        return not path and first_root == second_root
    if first == 0:
        return not path and first_root == EMPTY_ROOT
    if not path:
        return False
    proof = list(path)
    if first & (first - 1) == 0:  # a power of two: the first tree is a perfect subtree, its root starts the path
        proof.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


class ListSource:
    """A :class:`HashSource` over leaf hashes in memory (tests, benchmarks' baselines): every perfect subtree is
    kept, level by level, and :meth:`append` adds those a new leaf completes."""

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    def __len__(self) -> int:
        return len(self.levels[0])

    def append(self, leaf_hash: bytes) -> None:
        self.levels[0].append(leaf_hash)
        i, level = len(self.levels[0]) - 1, 0
        while i & 1:  # a right child completed its parent
            if len(self.levels) == level + 1:
                self.levels.append([])
            row = self.levels[level]
            self.levels[level + 1].append(node_hash(row[i - 1], row[i]))
            i >>= 1
            level += 1

    def perfect(self, level: int, index: int) -> bytes:
        if not (0 <= level < len(self.levels) and 0 <= index < len(self.levels[level])):
            raise IndexError(f"no perfect subtree ({level}, {index}) in {len(self)} leaves")
        return self.levels[level][index]
