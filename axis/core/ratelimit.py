"""Failed authentications per client address (pure: the clock is passed in) — shared by the endpoint servers and
the admin app."""

from __future__ import annotations

from collections import OrderedDict


class TooManyFailures(Exception):
    """This client address failed authentication too often: answer 429 without checking its token."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed authentication attempts; retry after {retry_after:.0f} s")
        self.retry_after = retry_after


class FailureLimiter:
    """Failed token checks per client address in a fixed window (pure: the clock is passed in).

    An address that reaches ``max_failures`` failures within ``window`` seconds of its first one is refused
    until that window ends. Successes never reset a counter (neither the address's own — an attacker holding
    one valid token could otherwise interleave it to keep guessing — nor anyone else's). At most ``max_clients``
    addresses are tracked: expired windows are dropped, then the least recently failing addresses.
    """

    def __init__(self, max_failures: int = 20, window: float = 60.0, max_clients: int = 100_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._entries: OrderedDict[str, list[float]] = OrderedDict()  # address -> [window start, failures]

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, address: str, now: float) -> None:
        """Raise :class:`TooManyFailures` if ``address`` is over its limit (before any token is checked)."""
        entry = self._entries.get(address)
        if entry is None:
            return
        start, failures = entry
        if now - start >= self.window:
            del self._entries[address]
        elif failures >= self.max_failures:
            raise TooManyFailures(max(1.0, start + self.window - now))

    def failed(self, address: str, now: float) -> None:
        entry = self._entries.get(address)
        if entry is None or now - entry[0] >= self.window:
            self._entries[address] = [now, 1]
        else:
            entry[1] += 1
        self._entries.move_to_end(address)
        self._evict(now)

    def _evict(self, now: float) -> None:
        """Amortized O(1): entries are ordered by last failure, so expired windows collect at the front."""
        entries = self._entries
        while entries:
            first = next(iter(entries))
            if now - entries[first][0] < self.window:
                break
            del entries[first]
        while len(entries) > self.max_clients:
            entries.popitem(last=False)  # the least recently failing address
