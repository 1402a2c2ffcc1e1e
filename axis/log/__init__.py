"""The evidence log's storage (contract section 5): leaves, perfect-subtree hashes and signed tree heads in SQL
(SQLite by default, PostgreSQL by URL). The vocabulary — events, tree heads, proofs — is :mod:`axis.core.evidence`
and :mod:`axis.core.merkle`."""

from axis.log.store import LogStore

__all__ = ["LogStore"]
