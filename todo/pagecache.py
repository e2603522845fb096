"""List pages kept in each worker's memory, valid while their user's revision holds

A page is stored with the revision of its user's tasks read *before* the page
(todo/tasks.py), so it is never older than that revision: every write changes
the revision in its own transaction (migration 0004). A page is served again
only when the user's revision is still the one it was stored with, which costs
one indexed lookup instead of reading, encoding and counting up to 1000 rows.
So a list never shows less than what was committed before the request began,
from whichever worker it comes.

The pages are bounded by what they take in memory (PAGE_CACHE_MB per worker, 0
turns the cache off): each counts its own bytes plus ENTRY_OVERHEAD_BYTES for its
key and bookkeeping, and the least recently used go first.
"""

import threading
from collections import OrderedDict

# What a kept page costs besides its own bytes, at most: its key (a user id of up
# to 255 characters, a search of up to 200, a cursor position), the page object and
# the dict's entry. Counted so that many tiny pages (a search that finds nothing is
# 2 bytes of JSON) cannot grow a worker far past the bound: measured, such an entry
# takes 0.4 KiB with ordinary keys and under 3 KiB with the longest 4-byte ones.
ENTRY_OVERHEAD_BYTES = 4096


class PageCache:
    """An LRU bounded by bytes whose hits must match a revision: what functools'
    lru_cache (bounded by count, no validation) does not do."""

    def __init__(self, max_bytes: int, entry_overhead: int = ENTRY_OVERHEAD_BYTES):
        self.max_bytes = max_bytes
        self.entry_overhead = entry_overhead
        self.size = 0
        self._pages: OrderedDict = OrderedDict()  # key -> (revision, page, size)
        self._lock = threading.Lock()  # gthread workers share one cache

    def get(self, key, revision):
        """The page stored under `key` at `revision`, else None."""
        with self._lock:
            entry = self._pages.get(key)
            if entry is None or entry[0] != revision:
                return None
            self._pages.move_to_end(key)
            return entry[1]

    def put(self, key, revision, page, size: int) -> None:
        """Keep `page`, whose own data takes `size` bytes, for `revision`."""
        size += self.entry_overhead
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._pages.pop(key, None)
            if old is not None:
                self.size -= old[2]
            self._pages[key] = (revision, page, size)
            self.size += size
            while self.size > self.max_bytes:
                _, (_, _, dropped) = self._pages.popitem(last=False)
                self.size -= dropped

    def clear(self) -> None:
        with self._lock:
            self._pages.clear()
            self.size = 0
