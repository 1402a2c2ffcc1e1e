"""The admin app's tests read a statistics store: the same store fixtures as the statistics tests."""

from tests.stats.conftest import store_url

__all__ = ["store_url"]
