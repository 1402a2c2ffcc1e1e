"""The blob store of big documents (:mod:`axis.core.blobref` says what a reference is): content-addressed, shared by
the endpoint hosts and the routers. :class:`BlobStore` is the interface (small enough for PostgreSQL large objects
or an S3-compatible store to implement); :class:`FileBlobStore` the default, a directory (``blobs.dir``)."""

from axis.blobs.store import BlobMissing, BlobStore, FileBlobStore, Spool, open_blobs

__all__ = ["BlobMissing", "BlobStore", "FileBlobStore", "Spool", "open_blobs"]
