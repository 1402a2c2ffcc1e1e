"""The blob store of big documents (:mod:`axis.core.blobref` says what a reference is): content-addressed, shared by
the endpoint hosts and the routers. :class:`BlobStore` is the interface; :class:`FileBlobStore` the default, a
directory (``blobs.dir``); :class:`axis.blobs.postgres.PostgresBlobStore` PostgreSQL large objects (``blobs.url``).
:func:`open_blobs` picks one from the configuration."""

from pathlib import Path

from axis.blobs.postgres import PostgresBlobStore, shared_store
from axis.blobs.store import BlobMissing, BlobStore, BlobStoreUnavailable, FileBlobStore, Spool


def open_blobs(root: Path | str, url: str = "") -> BlobStore:
    """The blob store: in the PostgreSQL database at ``url`` (``blobs.url``; one store per database in a process,
    uploads spooling in ``root/tmp``), else the directory ``root`` (created when missing)."""
    if url:
        return shared_store(url, Path(root) / "tmp")
    return FileBlobStore(root)


__all__ = ["BlobMissing", "BlobStore", "BlobStoreUnavailable", "FileBlobStore", "PostgresBlobStore", "Spool",
           "open_blobs"]
