"""Event-id deduplication in fixed memory: the writer's window of recently stored ids.

Why not a ``PRIMARY KEY`` on ``events.event_id``: DuckDB keeps that index (an ART) wholly in memory,
one entry (~50 bytes) per event, and never evicts it. At the default 1 GB buffer pool the writer ran
out of memory after some 18 million events, and the database process grew with every event.

The exact rule that replaces it, with memory fixed at start:

* ``RecentIds`` holds the ids of the last ``capacity`` stored events (~21 bytes each: ``generations``
  - 1 sorted, sealed arrays in one preallocated block, a set for the one being filled, a counting
  filter in front) and
  ``evicted_until``: the largest ``received_at`` of any stored event that is no longer in it. So
  every stored event received after ``evicted_until`` is in the window.
* An event is accepted only with ``ts <= received_at + MAX_FUTURE`` (``armor_ab.events``), so the
  first copy of an incoming event with time ``ts`` was received at or after ``ts - MAX_FUTURE``.
* Hence an incoming event with ``ts - MAX_FUTURE > evicted_until`` (``fresh``) is a repeat exactly
  when its id is in the window. The others (a retry of a days-old event, an import of history)
  are looked up in the table itself, over the rows received since ``ts - MAX_FUTURE`` (DuckDB's
  zone maps on ``received_at`` skip the older row groups): rare, and exact too.

Size the window to hold at least ten minutes of peak ingestion (``armor-ab serve --dedup-window``):
then every event of a live client is fresh, and the table lookups are for late retries only.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

KEY = np.dtype("S16")  # a UUID's 16 bytes; S16 compares (and sorts) them as unsigned bytes
NEVER = np.iinfo(np.int64).min  # ``evicted_until`` before anything was evicted

# ASCII hex digit -> its value; 255 for anything else (refused below).
_NIBBLE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _NIBBLE[_c] = 10 + _i
_HEX_COLUMNS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])  # the digits of 8-4-4-4-12


def uuid_keys(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The 16-byte keys (``KEY`` dtype) of canonical UUID strings (``8-4-4-4-12`` hex digits), vectorised.

    Raises ``ValueError`` for anything else: ids are validated on the way in, so that is a bug.
    """
    if isinstance(ids, pa.ChunkedArray):
        parts = [uuid_keys(chunk) for chunk in ids.chunks]
        return np.concatenate(parts) if parts else np.empty(0, dtype=KEY)
    arr = ids.cast(pa.string()) if ids.type != pa.string() else ids
    n = len(arr)
    if n == 0:
        return np.empty(0, dtype=KEY)
    if arr.null_count:
        raise ValueError("event ids must not be null")
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4)
    if not (np.diff(offsets) == 36).all():
        raise ValueError("event ids must be canonical UUIDs (36 characters)")
    text = np.frombuffer(arr.buffers()[2], dtype=np.uint8, count=36 * n, offset=int(offsets[0])).reshape(n, 36)
    digits = _NIBBLE[text[:, _HEX_COLUMNS]]  # (n, 32)
    if (digits == 255).any() or (text[:, [8, 13, 18, 23]] != ord("-")).any():
        raise ValueError("event ids must be canonical UUIDs (hex digits and dashes)")
    return np.ascontiguousarray((digits[:, 0::2] << 4) | digits[:, 1::2]).view(KEY).reshape(n)


def _halves(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The keys' first and last 8 bytes as native unsigned integers: sorting by (hi, lo) sorts the bytes."""
    words = keys.view(">u8")
    return words[0::2].astype(np.uint64), words[1::2].astype(np.uint64)


class RecentIds:
    """The keys of the last ``capacity`` stored events, in memory allocated (and touched) once.

    Used by the writer thread only. ``contains`` answers for a batch of keys; ``add`` records keys
    that were committed; ``evicted_until`` (microseconds) says how far back the window is complete.
    A sealed generation is two sorted arrays of 8-byte halves: ``searchsorted`` on integers is ~50
    times faster than on 16-byte strings. Keys sharing their first half (time-ordered UUIDs) are
    told apart by the second, sorted within each run.
    """

    def __init__(self, capacity: int = 8_000_000, generations: int = 64) -> None:
        if generations < 2 or capacity < generations:
            raise ValueError("the dedup window needs at least 2 generations and one id per generation")
        self.generation_size = capacity // generations
        self.capacity = self.generation_size * generations
        # Sealed generations: one block, written now so that its pages are resident from the
        # start (the window's memory does not grow while the server runs).
        self._hi = np.full((generations - 1, self.generation_size), np.iinfo(np.uint64).max, dtype=np.uint64)
        self._lo = np.full((generations - 1, self.generation_size), np.iinfo(np.uint64).max, dtype=np.uint64)
        self._sealed_max = np.full(generations - 1, NEVER, dtype=np.int64)  # newest received_at of each
        self._sealed_count = 0  # generations sealed so far (at most generations - 1 hold keys)
        self._next = 0  # the slot the next sealed generation goes to (the oldest one once full)
        self._filling: set[bytes] = set()
        # The filling generation's halves too, in arrival order: sealing sorts these (a list of
        # bytes objects would take four times as long to turn into arrays).
        self._fill_hi = np.zeros(self.generation_size, dtype=np.uint64)
        self._fill_lo = np.zeros(self.generation_size, dtype=np.uint64)
        self._filling_max = NEVER
        self.evicted_until = NEVER
        # A counting filter over every key in the window (two salted hashes, at least 4 one-byte
        # counters per key): most keys are new, and it answers "not here" for ~85% of them without
        # a binary search. A counter would wrap only past 255 keys on it: never, for salted hashes.
        self._bits = int(np.ceil(np.log2(4 * self.capacity)))
        self._counts = np.zeros(1 << self._bits, dtype=np.uint8)
        self._counts.fill(0)  # resident now, like the generations
        rng = np.random.default_rng()
        self._salt = rng.integers(1, np.iinfo(np.int64).max, size=4, dtype=np.int64).astype(np.uint64) | np.uint64(1)

    def __len__(self) -> int:
        return self._sealed_count * self.generation_size + len(self._filling)

    def covers(self, ts_us: np.ndarray, max_future_us: int) -> np.ndarray:
        """Which events of these ``ts`` (microseconds) the window alone can tell apart (``fresh``)."""
        return (ts_us - max_future_us) > self.evicted_until

    def _slots(self, hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The key's two counters (multiply-shift hashing of both halves; uint64 arithmetic wraps)."""
        a, b, c, d = self._salt
        shift = np.uint64(64 - self._bits)
        return (hi * a + lo * b) >> shift, (hi * c + lo * d) >> shift

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """A boolean per key: is it in the window."""
        found = np.zeros(len(keys), dtype=bool)
        if len(keys) == 0:
            return found
        h1, h2 = self._slots(*_halves(keys))
        maybe = np.flatnonzero((self._counts[h1] > 0) & (self._counts[h2] > 0))
        if len(maybe):
            found[maybe] = self._contains_exact(keys[maybe])
        return found

    def _contains_exact(self, keys: np.ndarray) -> np.ndarray:
        found = np.fromiter((k in self._filling for k in keys.tolist()), dtype=bool, count=len(keys))
        if self._sealed_count == 0:
            return found
        q_hi, q_lo = _halves(keys)
        # Sorted queries let searchsorted walk the generation once (ten times faster than random order).
        order = np.argsort(q_hi, kind="stable")
        q_hi, q_lo = q_hi[order], q_lo[order]
        hit = found[order]
        last = self.generation_size - 1
        for slot in range(self._sealed_count):
            hi, lo = self._hi[slot], self._lo[slot]
            pos = np.minimum(np.searchsorted(hi, q_hi), last)
            same_hi = hi[pos] == q_hi
            hit |= same_hi & (lo[pos] == q_lo)
            for i in np.flatnonzero(same_hi & ~hit):  # a run of equal first halves: rare
                end = np.searchsorted(hi, q_hi[i], side="right")
                j = pos[i] + np.searchsorted(lo[pos[i] : end], q_lo[i])
                hit[i] = j < end and lo[j] == q_lo[i]
        found[order] = hit
        return found

    def add(self, keys: np.ndarray, newest_received_us: int) -> None:
        """Record committed keys (distinct, not in the window); ``newest_received_us``: their latest ``received_at``."""
        hi, lo = _halves(keys)
        for h in self._slots(hi, lo):
            self._bump(h, 1)
        items = keys.tolist()
        start = 0
        while start < len(items):
            n = len(self._filling)
            take = min(self.generation_size - n, len(items) - start)
            self._filling.update(items[start : start + take])
            self._fill_hi[n : n + take] = hi[start : start + take]
            self._fill_lo[n : n + take] = lo[start : start + take]
            self._filling_max = max(self._filling_max, newest_received_us)
            start += take
            if len(self._filling) >= self.generation_size:
                self._seal()

    def load(self, keys: np.ndarray, received_us: np.ndarray, complete_after: int = NEVER) -> None:
        """Fill an empty window at start from stored events: their keys and ``received_at``
        (microseconds), oldest first, at most ``capacity``. ``complete_after``: every stored event
        received after it is among them (``NEVER`` when all are)."""
        if len(self):
            raise ValueError("load fills an empty window")
        keys, received_us = keys[-self.capacity :], received_us[-self.capacity :]
        for start in range(0, len(keys), self.generation_size):
            chunk = slice(start, start + self.generation_size)
            self.add(keys[chunk], int(received_us[chunk].max()))
        self.evicted_until = max(self.evicted_until, complete_after)

    def _bump(self, slots: np.ndarray, step: int) -> None:
        """Add ``step`` to each of these counters (an index may repeat). A large batch is grouped first:
        sorted, de-duplicated indices walk the 32 MB of counters in order (three times faster)."""
        if len(slots) < 10_000:
            np.add.at(self._counts, slots, np.uint8(step % 256))
            return
        unique, times = np.unique(slots, return_counts=True)
        self._counts[unique] += (times * step % 256).astype(np.uint8)

    def _seal(self) -> None:
        order = np.lexsort((self._fill_lo, self._fill_hi))  # by first half, then second: the bytes' order
        slot = self._next
        if self._sealed_count == len(self._sealed_max):  # full: the oldest generation leaves the window
            self.evicted_until = max(self.evicted_until, int(self._sealed_max[slot]))
            for h in self._slots(self._hi[slot], self._lo[slot]):
                self._bump(h, -1)
        else:
            self._sealed_count += 1
        np.take(self._fill_hi, order, out=self._hi[slot])
        np.take(self._fill_lo, order, out=self._lo[slot])
        self._sealed_max[slot] = self._filling_max
        self._next = (slot + 1) % len(self._sealed_max)
        self._filling = set()
        self._filling_max = NEVER
