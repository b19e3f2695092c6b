"""Deterministic visitor assignment, bit-compatible with the GrowthBook SDK specification.

A visitor's bucket ``n`` in [0, 1) is a hash of the experiment seed and the user id; variant ``i``
owns the range ``[start_i, start_i + coverage * weight_i)`` and a bucket in no range is outside
the experiment. Everything here reproduces the specification bit for bit:

* the hash is 32-bit FNV-1a over the string's UTF-16 code units: that is what the reference
  (JavaScript) SDK's ``charCodeAt`` loop hashes and what the Python SDK reproduces. For ASCII
  ids the code units are the bytes, so UTF-8 and UTF-16 agree there; for other ids only UTF-16
  gives the same buckets as GrowthBook, so it is what we hash.
* version 1: ``(fnv(value + seed) % 1000) / 1000``; version 2:
  ``(fnv(str(fnv(seed + value))) % 10000) / 10000``.
* an empty user id is never enrolled (the SDKs skip a visitor whose hash attribute is empty).

Three entry points: :func:`assign` (one visitor, plain and obviously right), :class:`Assigner`
(one experiment, precomputed for the request path) and :meth:`Assigner.assign_many` /
:func:`assign_many` (numpy, millions of visitors at once). They agree exactly; the tests hold
them to that and to the GrowthBook SDK.
"""

from __future__ import annotations

import math
import numbers
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from armor_ab.experiments.models import ExperimentSpec


class SeededExperiment(Protocol):
    """A stored experiment as assignment needs it (``armor_ab.store.experiments.ExperimentRecord``),
    named structurally so that this layer does not import the store above it."""

    @property
    def spec(self) -> ExperimentSpec: ...

    @property
    def effective_seed(self) -> str: ...

FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193
_MASK = 0xFFFFFFFF
# Native byte order, so that memoryview.cast("H") reads the encoded bytes back as code units.
_UTF16 = "utf-16-le" if sys.byteorder == "little" else "utf-16-be"
WEIGHT_SUM_MIN, WEIGHT_SUM_MAX = 0.99, 1.01
_BUCKETS = {1: 1000, 2: 10000}  # hash version -> number of distinct buckets


# --- the specification, one function per step ------------------------------------------------


def _code_units(s: str) -> bytes | memoryview:
    """What FNV-1a consumes: the bytes of an ASCII string, else its UTF-16 code units."""
    if s.isascii():
        return s.encode("ascii")
    # surrogatepass: a lone surrogate is one code unit in JS too, not an encoding error.
    return memoryview(s.encode(_UTF16, "surrogatepass")).cast("H")


def _fnv_continue(h: int, units: bytes | memoryview | Sequence[int]) -> int:
    """FNV-1a is streaming: continue from state ``h`` over more code units."""
    for u in units:
        h = ((h ^ u) * FNV_PRIME) & _MASK
    return h


def fnv1a32(s: str) -> int:
    """32-bit FNV-1a of a string's UTF-16 code units (= its bytes when ASCII)."""
    return _fnv_continue(FNV_OFFSET, _code_units(s))


def gb_hash(seed: str, value: str, version: int) -> float | None:
    """The bucket in [0, 1) of ``value``; None for an unknown hash version."""
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def _valid_weights(weights: Sequence[float] | None, n: int) -> bool:
    if weights is None or len(weights) != n:
        return False
    # Like the GrowthBook Python SDK we also refuse negative or non-finite weights (the JS SDK
    # would build inverted ranges from them); a valid spec never has any.
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
            return False
    return WEIGHT_SUM_MIN <= sum(weights) <= WEIGHT_SUM_MAX


def get_bucket_ranges(
    n: int, coverage: float = 1.0, weights: Sequence[float] | None = None
) -> list[tuple[float, float]]:
    """Variant ``i`` owns ``[start_i, start_i + coverage * weight_i)``, ``start_i`` the cumulative weight.

    Coverage is clamped to [0, 1]; weights fall back to equal ones when missing, of the wrong
    length or not summing to 1 (+-0.01). Shrinking each range from its left edge is what keeps a
    visitor's variant when coverage grows.
    """
    if coverage < 0:
        coverage = 0
    if coverage > 1:
        coverage = 1
    if not _valid_weights(weights, n):
        weights = [1 / n] * n if n > 0 else []
    ranges = []
    cumulative = 0.0
    for w in weights:
        start = cumulative
        cumulative += w
        ranges.append((start, start + coverage * w))
    return ranges


def in_range(n: float, bucket_range: tuple[float, float]) -> bool:
    return bucket_range[0] <= n < bucket_range[1]


def choose_variation(n: float, ranges: Sequence[tuple[float, float]]) -> int:
    """The first range holding ``n``, or -1 (outside coverage)."""
    for i, r in enumerate(ranges):
        if r[0] <= n < r[1]:
            return i
    return -1


# --- one visitor ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assignment:
    user_id: str
    variant: str | None  # None: outside coverage (or an empty user id)
    in_experiment: bool
    hash: float  # the bucket n in [0, 1)


def _check(variants: Sequence[str], hash_version: int) -> None:
    if hash_version not in _BUCKETS:
        raise ValueError(f"hash_version must be 1 or 2, got {hash_version!r}")
    if len(variants) < 2:
        raise ValueError(f"an experiment needs at least two variants, got {len(variants)}")


def assign(
    user_id: str,
    *,
    seed: str,
    variants: Sequence[str],
    weights: Sequence[float] | None = None,
    coverage: float = 1.0,
    hash_version: int = 2,
) -> Assignment:
    """Assign one visitor, straight from the specification (see :class:`Assigner` for speed)."""
    _check(variants, hash_version)
    n = gb_hash(seed, user_id, hash_version)
    assert n is not None  # _check guarantees a known version
    i = choose_variation(n, get_bucket_ranges(len(variants), coverage, weights)) if user_id else -1
    return Assignment(user_id, variants[i] if i >= 0 else None, i >= 0, n)


# --- precomputation -----------------------------------------------------------------------------
#
# FNV-1a's low k bits after a step depend only on the low k bits before it (xor touches only the
# low bits of the state, and multiplication never carries downwards). So for a fixed string x of
# units below 2**k, fnv(h, x) = h * P**len(x) + D[h mod 2**k] (mod 2**32), with a table D of
# 2**k entries. That turns a known suffix (version 1's seed) or a 3-digit chunk of version 2's
# decimal string into one multiply-add.


def _suffix_table(units: Sequence[int], bits: int) -> tuple[int, list[int]]:
    """(P**len mod 2**32, D) such that fnv(h, units) = (h * P**len + D[h & (2**bits - 1)]) mod 2**32."""
    mult = pow(FNV_PRIME, len(units), 1 << 32)
    lo = np.arange(1 << bits, dtype=np.uint32)
    h = lo.copy()
    for u in units:
        h = (h ^ np.uint32(u)) * np.uint32(FNV_PRIME)
    d = h - lo * np.uint32(mult)  # uint32 arithmetic wraps, i.e. works mod 2**32
    return mult, d.tolist()


_UINT32 = "I" if array("I").itemsize == 4 else "L"


def _digit_chunk_table(width: int) -> array:
    """D for every zero-padded ``width``-digit string, indexed by low_byte * 10**width + value."""
    values = np.arange(10**width, dtype=np.uint32)
    lo = np.arange(256, dtype=np.uint32)[:, None]
    h = lo.copy()
    for place in range(width - 1, -1, -1):
        digit = values // np.uint32(10**place) % np.uint32(10)
        h = (h ^ (digit + np.uint32(48))) * np.uint32(FNV_PRIME)
    d = h - lo * np.uint32(pow(FNV_PRIME, width, 1 << 32))
    # array, not list: 256,000 list entries would be 256,000 int objects scattered over 8 MB,
    # and the cache misses would cost more than the table saves.
    return array(_UINT32, d.ravel().tobytes())


_P3 = pow(FNV_PRIME, 3, 1 << 32)
_TRIPLES = _digit_chunk_table(3)
# For each leading part a = h // 10**6 of a 32-bit hash (at most 4294): the state after
# hashing str(a), already multiplied for the next 3-digit step, and its low byte as a row offset.
_LEADS = [fnv1a32(str(a)) for a in range(_MASK // 1_000_000 + 1)]
_LEADS_P3 = [(lead * _P3) & _MASK for lead in _LEADS]
_LEADS_ROW = [(lead & 255) * 1000 for lead in _LEADS]


def _second_hash(h: int) -> int:
    """fnv1a32(str(h)) for version 2: two table steps instead of ten loop turns."""
    if h < 1_000_000:  # one hash in 4295: not worth a table
        return _fnv_continue(FNV_OFFSET, str(h).encode("ascii"))
    a, r = divmod(h, 1_000_000)
    b, c = divmod(r, 1000)
    h = (_LEADS_P3[a] + _TRIPLES[_LEADS_ROW[a] + b]) & _MASK
    return (h * _P3 + _TRIPLES[(h & 255) * 1000 + c]) & _MASK


# Assignment is frozen; its generated __init__ pays for the frozen check on every field. The
# slot descriptors set the same fields without it (the hot path builds one per request).
_new = object.__new__
_set_user_id = Assignment.user_id.__set__  # type: ignore[attr-defined]
_set_variant = Assignment.variant.__set__  # type: ignore[attr-defined]
_set_in_experiment = Assignment.in_experiment.__set__  # type: ignore[attr-defined]
_set_hash = Assignment.hash.__set__  # type: ignore[attr-defined]

_BLOCK = 16384  # ids per numpy block: a block's code units and state stay in cache
_LONG = 256  # ids longer than this (rare) are hashed one by one instead of widening a block


class Assigner:
    """Assignment for one experiment with everything that does not depend on the visitor precomputed.

    * version 2 hashes ``seed + user_id``: the FNV state after the seed is computed once;
    * version 1 hashes ``user_id + seed``: the seed suffix is one table step (see above);
    * the hash takes only 10,000 (v2) or 1,000 (v1) values, so the variant of every possible
      bucket is decided once, by :func:`choose_variation` itself, and looked up per visitor.
    """

    def __init__(
        self,
        *,
        seed: str,
        variants: Sequence[str],
        weights: Sequence[float] | None = None,
        coverage: float = 1.0,
        hash_version: int = 2,
    ) -> None:
        _check(variants, hash_version)
        self.seed = seed
        self.variants = tuple(variants)
        self.hash_version = hash_version
        self.ranges = get_bucket_ranges(len(variants), coverage, weights)
        buckets = _BUCKETS[hash_version]
        index = [choose_variation(k / buckets, self.ranges) for k in range(buckets)]
        self._variant_at = [self.variants[i] if i >= 0 else None for i in index]
        self._hash_at = [k / buckets for k in range(buckets)]  # the same float gb_hash returns
        self._bucket_info = list(zip(self._variant_at, self._hash_at, strict=True))
        self._inline = hash_version == 2  # assign() has the version 2 hash inlined
        self._index_table = np.array(index, dtype=np.int64)
        self._hash_table = np.array(self._hash_at, dtype=np.float64)
        seed_units = list(_code_units(seed))
        self._seed_units = seed_units
        if hash_version == 2:
            self._start = _fnv_continue(FNV_OFFSET, seed_units)
        else:
            self._start = FNV_OFFSET
            bits = 8 if max(seed_units, default=0) < 256 else 16
            self._suffix_mask = (1 << bits) - 1
            self._suffix_mult, self._suffix_add = _suffix_table(seed_units, bits)

    @classmethod
    def from_experiment(cls, experiment: ExperimentSpec | SeededExperiment) -> Assigner:
        """From a spec (seed = ``spec.seed``) or a stored record (seed = ``record.effective_seed``,
        which changes with each new bucket version)."""
        if isinstance(experiment, ExperimentSpec):
            spec, seed = experiment, experiment.seed
        else:
            spec, seed = experiment.spec, experiment.effective_seed
        return cls(
            seed=seed,
            variants=[v.key for v in spec.variants],
            weights=spec.weights,
            coverage=spec.coverage,
            hash_version=spec.hash_version,
        )

    def _bucket(self, user_id: str) -> int:
        """The bucket number k of a visitor (hash = k / 10000 for v2, k / 1000 for v1)."""
        h = _fnv_continue(self._start, _code_units(user_id))
        if self.hash_version == 2:
            return _second_hash(h) % 10000
        h = (h * self._suffix_mult + self._suffix_add[h & self._suffix_mask]) & _MASK
        return h % 1000

    def _assign_any(self, user_id: str) -> Assignment:
        """Any id and hash version; :meth:`assign` is this, specialised for its common case."""
        k = self._bucket(user_id)
        variant = self._variant_at[k] if user_id else None
        return Assignment(user_id, variant, variant is not None, self._hash_at[k])

    def assign(self, user_id: str) -> Assignment:
        """Assign one visitor: the same answer as :func:`assign`, several times faster.

        The hash loop is nearly the whole cost, so for the common case (version 2, a non-empty
        ASCII id) :meth:`_bucket` and :func:`_second_hash` are inlined here: four bytes a turn
        with one mask, literal constants (FNV prime, 2**32 - 1), no call the id doesn't need.
        """
        if not (self._inline and user_id and user_id.isascii()):
            return self._assign_any(user_id)
        h = self._start
        data = user_id.encode("ascii")
        rest = len(data) & 3
        if rest:
            for u in data[:rest]:
                h = ((h ^ u) * 16777619) & 4294967295
            data = data[rest:]
        it = iter(data)
        for a, b, c, d in zip(it, it, it, it):  # noqa: B905 - strict=True costs 10%; len % 4 == 0 here
            # Masking once per four bytes is exact: xor and multiply only ever carry upwards.
            h = ((((((h ^ a) * 16777619 ^ b) * 16777619) ^ c) * 16777619 ^ d) * 16777619) & 4294967295
        if h >= 1_000_000:
            a, rest = divmod(h, 1_000_000)
            b, c = divmod(rest, 1000)
            h = (_LEADS_P3[a] + _TRIPLES[_LEADS_ROW[a] + b]) & 4294967295
            k = ((h * _P3 + _TRIPLES[(h & 255) * 1000 + c]) & 4294967295) % 10000
        else:
            k = _second_hash(h) % 10000
        variant, hash_ = self._bucket_info[k]
        out = _new(Assignment)
        _set_user_id(out, user_id)
        _set_variant(out, variant)
        _set_in_experiment(out, variant is not None)
        _set_hash(out, hash_)
        return out

    def assign_many(self, user_ids: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(variant index per id, -1 outside the experiment; hash per id), identical to :meth:`assign`."""
        keys, lengths = self._buckets_many(user_ids)
        index = self._index_table[keys]
        index[lengths == 0] = -1
        return index, self._hash_table[keys]

    # --- the vectorized hash -----------------------------------------------------------------

    def _buckets_many(self, user_ids: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(user_ids, np.ndarray) and user_ids.ndim != 1:
            raise ValueError(f"user_ids must be one-dimensional, got shape {user_ids.shape}")
        ids = user_ids.tolist() if isinstance(user_ids, np.ndarray) else user_ids
        kinds = set(map(type, ids))
        if kinds - {str}:
            raise TypeError(f"user ids must be str, got {sorted(k.__name__ for k in kinds - {str})}")
        n = len(ids)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=n)
        block_lengths = lengths
        long_rows = np.flatnonzero(lengths > _LONG).tolist()
        if long_rows:
            # One very long id would widen its whole block: hash those one by one, and blank
            # them (in a copy) for the blocks.
            long_keys = [self._bucket(ids[i]) for i in long_rows]
            ids = list(ids)
            for i in long_rows:
                ids[i] = ""
            block_lengths = np.where(lengths > _LONG, 0, lengths)
        keys = np.empty(n, dtype=np.int64)
        for start in range(0, n, _BLOCK):
            stop = min(start + _BLOCK, n)
            keys[start:stop] = self._block_buckets(ids[start:stop], block_lengths[start:stop])
        if long_rows:
            keys[long_rows] = long_keys
        return keys, lengths

    def _block_buckets(self, ids: list[str], lengths: np.ndarray) -> np.ndarray:
        width = max(int(lengths.max()), 1)
        try:  # ASCII: one byte a code unit
            units = np.array(ids, dtype=f"S{width}").view(np.uint8)
        except UnicodeEncodeError:  # else code points, split into surrogate pairs below
            units = np.array(ids, dtype=f"U{width}").view(np.uint32)
        # Column j = the j-th code unit of every id, contiguous for the ufuncs.
        columns = np.ascontiguousarray(units.reshape(len(ids), width).T)
        h = np.full(len(ids), self._start, dtype=np.uint32)
        _fnv_columns(h, columns, lengths)
        if self.hash_version == 2:
            return (_second_hash_many(h) % np.uint32(10000)).astype(np.int64)
        for u in self._seed_units:
            np.bitwise_xor(h, np.uint32(u), out=h)
            np.multiply(h, np.uint32(FNV_PRIME), out=h)
        return (h % np.uint32(1000)).astype(np.int64)


_PRIME32 = np.uint32(FNV_PRIME)


def _fnv_columns(h: np.ndarray, columns: np.ndarray, lengths: np.ndarray) -> None:
    """Continue FNV-1a in place over padded code-unit columns; row r stops after lengths[r] units."""
    shortest = int(lengths.min())
    astral = columns.dtype == np.uint32 and bool((columns > 0xFFFF).any())
    step = np.empty_like(h)
    for j, col in enumerate(columns):
        if astral and bool((col > 0xFFFF).any()):
            # A code point above U+FFFF is two UTF-16 units: high then low surrogate.
            offset = col.astype(np.int64) - 0x10000
            high = (0xD800 + (offset >> 10)).astype(np.uint32)
            low = (0xDC00 + (offset & 0x3FF)).astype(np.uint32)
            pair = ((h ^ high) * _PRIME32 ^ low) * _PRIME32
            np.bitwise_xor(h, col, out=step)
            np.multiply(step, _PRIME32, out=step)
            np.copyto(step, pair, where=col > 0xFFFF)
            np.copyto(h, step, where=lengths > j)
        elif j < shortest:  # every id still has a unit here: no mask needed
            np.bitwise_xor(h, col, out=h)
            np.multiply(h, _PRIME32, out=h)
        else:
            np.bitwise_xor(h, col, out=step)
            np.multiply(step, _PRIME32, out=step)
            np.copyto(h, step, where=lengths > j)


def _second_hash_many(h1: np.ndarray) -> np.ndarray:
    """fnv1a32(str(h1)) elementwise: the decimal digits, most significant first, no leading zeros."""
    digits = np.empty((10, h1.size), dtype=np.uint32)
    rest = h1.copy()
    for i in range(9, -1, -1):
        digits[i] = rest % np.uint32(10)
        rest //= np.uint32(10)
    h = np.full(h1.size, FNV_OFFSET, dtype=np.uint32)
    step = np.empty_like(h)
    for i in range(10):
        np.bitwise_xor(h, digits[i] + np.uint32(48), out=step)
        np.multiply(step, _PRIME32, out=step)
        if i == 9:  # the last digit is always there ("0" for 0)
            h = step
        else:  # digit i is written only when h1 has at least 10 - i digits
            np.copyto(h, step, where=h1 >= np.uint32(10 ** (9 - i)))
    return h


def assign_many(
    user_ids: Sequence[str] | np.ndarray,
    *,
    seed: str,
    variants: Sequence[str],
    weights: Sequence[float] | None = None,
    coverage: float = 1.0,
    hash_version: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized :func:`assign`: (variant index, -1 outside the experiment; hash) per id."""
    assigner = Assigner(seed=seed, variants=variants, weights=weights, coverage=coverage, hash_version=hash_version)
    return assigner.assign_many(user_ids)
