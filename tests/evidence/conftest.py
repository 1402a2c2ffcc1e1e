"""Fixtures of the evidence log tests: a fresh RabbitMQ vhost per test (the ``axis.evidence`` queue starts empty)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from axis.broker.users import delete_users_with_prefix


@pytest.fixture
def vhost_url(amqp_url: str, rabbit_mgmt: tuple[str, tuple[str, str], str]) -> Iterator[str]:
    """A fresh vhost on the local broker for one test, deleted after it (with its broker users)."""
    base, auth, _ = rabbit_mgmt
    vhost = f"axis-evidence-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=base, auth=auth, timeout=30) as http:
        http.put(f"/api/vhosts/{vhost}").raise_for_status()
        http.put(f"/api/permissions/{vhost}/guest", json={"configure": ".*", "write": ".*", "read": ".*"}
                 ).raise_for_status()
        try:
            yield amqp_url.rsplit("/", 1)[0] + "/" + vhost
        finally:
            http.delete(f"/api/vhosts/{vhost}")
            delete_users_with_prefix(base, auth, f"{vhost}.")  # the axis's broker users (axis.broker.users)
