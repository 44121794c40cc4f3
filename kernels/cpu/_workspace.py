"""Scratch buffers reused across kernel calls, and the cache of transformed weights.

Workspaces: the Winograd, direct and im2col paths need large temporaries (VGG16's first layers
transform 29 MB of tiles per call). Allocating them fresh each call costs a page fault per
4 KiB page, which on this kind of machine is as slow as the arithmetic itself, so each thread
keeps one growing buffer per purpose and hands out views of it. Buffers never escape: every
array a kernel returns is freshly allocated, as the contract requires.

Transformed weights: backprop-to-image runs the same frozen weights forward and backward
many times; transforming a 512x512 kernel costs as much as a tenth of the convolution. The
cache maps a weight array (by identity, dropped when the array is garbage collected) to its
transform (Winograd's, or the direct path's packed panels), and checks on every hit a 64-bit
hash of the weight's bytes, so weights updated in place (an optimizer step) are
re-transformed rather than served stale. Set
``MINIGRAD_WINOGRAD_CACHE=0`` to disable it, or call ``clear_weight_cache()``.
"""

import os
import threading
import weakref

import numpy as np
from numba import njit, prange

from ._common import threads_for

_local = threading.local()


def scratch(name, shape, dtype):
    """A C-contiguous scratch array of ``shape`` and ``dtype`` owned by this thread.

    Its contents are undefined; the same memory is returned to the next request for
    ``name`` (on this thread), so a caller must be done with it before asking again."""
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    dtype = np.dtype(dtype)
    count = 1
    for s in shape:
        count *= int(s)
    nbytes = count * dtype.itemsize
    buf = buffers.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 1), np.uint8)
        buffers[name] = buf
    return buf[:nbytes].view(dtype).reshape(shape)


def release_scratch():
    """Free this thread's scratch buffers (they are re-created on demand)."""
    _local.buffers = {}


@njit(parallel=True, cache=True)
def _hash_words(words):
    """Two 32-bit wrapping sums over a uint32 array, sum(word_i * (2i + 1)) and
    sum((word_i ^ golden*i) * c): order-independent (a parallel reduction gives the same
    bits), vectorisable, and a change of any single word always changes the first (an odd
    multiplier is invertible mod 2**32)."""
    s1 = np.uint32(0)
    s2 = np.uint32(0)
    for ii in prange(words.size):
        i = np.uint32(ii)
        word = words[ii]
        s1 += word * (i + i + np.uint32(1))
        s2 += (word ^ (i * np.uint32(0x9E3779B9))) * np.uint32(0x85EBCA6B)
    return s1, s2


def _hash_words_numpy(words):
    """The same two sums with NumPy arrays (used when Numba's JIT is disabled: the loop
    above would then run in Python, slowly, and warn about the intended wraparound)."""
    i = np.arange(words.size, dtype=np.uint32)
    s1 = np.sum(words * (i + i + np.uint32(1)), dtype=np.uint32)
    s2 = np.sum((words ^ (i * np.uint32(0x9E3779B9))) * np.uint32(0x85EBCA6B), dtype=np.uint32)
    return s1, s2


def fingerprint(w):
    """A 64-bit hash of a float32 array's bytes (changes when any element changes)."""
    words = np.ascontiguousarray(w).reshape(-1).view(np.uint32)
    import numba

    if numba.config.DISABLE_JIT:
        s1, s2 = _hash_words_numpy(words)
    else:
        with threads_for(words.size):  # a training step hashes every small kernel it updated
            s1, s2 = _hash_words(words)
    # (Numba may widen the accumulators to 64 bits; their low 32 bits are the same sums.)
    return ((int(s1) & 0xFFFFFFFF) << 32) | (int(s2) & 0xFFFFFFFF)


class WeightCache:
    """Transformed weights keyed by (id(weight), kind), verified by a hash of the weight."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self.enabled = os.environ.get("MINIGRAD_WINOGRAD_CACHE", "1") != "0"
        self._entries = {}  # key -> (fingerprint, transformed)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, w, kind, make):
        """Return make(w) (an array, or None) for this weight array, from the cache when it is
        still valid."""
        if not self.enabled:
            return make(w)
        key = (id(w), kind)
        stamp = (w.shape, w.dtype.str, fingerprint(w))
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] == stamp:
            self.hits += 1
            return entry[1]
        self.misses += 1
        value = make(w)
        with self._lock:
            if entry is None:
                # forget the entry once the weight array itself is gone
                weakref.finalize(w, self._entries.pop, key, None)
            self._entries[key] = (stamp, value)
            self._evict(keep=key)
        return value

    def _evict(self, keep):
        total = self.nbytes
        for key in list(self._entries):
            if total <= self.max_bytes:
                break
            if key != keep:
                total -= _nbytes(self._entries.pop(key)[1])

    def clear(self):
        with self._lock:
            self._entries.clear()

    @property
    def nbytes(self):
        return sum(_nbytes(v[1]) for v in self._entries.values())


def _nbytes(value):
    return 0 if value is None else value.nbytes


# VGG16's transformed conv weights are 235 MB per direction; keep both directions.
weight_cache = WeightCache(max_bytes=int(os.environ.get("MINIGRAD_WINOGRAD_CACHE_MB", "640")) * 2**20)


def clear_weight_cache():
    weight_cache.clear()
