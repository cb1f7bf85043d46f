"""The TCU's disk log of C-2 link frames (issue 13; docs/security.md).

The TCU cannot open a sealed link frame, so it keeps each one as it came
(the ``evc/<id>/link`` payload) until the broker acknowledges it, the way
``tcu.Ring`` keeps plain records.  Without this, a TCU restart lost every
unacknowledged frame and, worse, forgot the record numbers it had given
sealed batches:

* the ring counted on from its last plain record, so numbers already given
  to a sealed batch the platform had stored were given again to new plain
  records, which the platform's exactly-once store then dropped as
  duplicates (silent loss);
* a sealed batch acknowledged out of order (its range kept in memory until
  the plain records before it were acknowledged) or never sent left a gap
  the ring's acknowledged mark could never pass: the ring kept every later
  segment and never reported an empty backlog.

One append-only file, ``link.log``, of entries::

    b"F" k lo hi boot len payload   a frame (k: its number in this log)
    b"A" k                          frame k acknowledged
    b"H" next_n                     numbers below next_n are taken

On load the frames without an ``A`` are queued again in order, the ranges of
the acknowledged ones above the ring's mark are handed back as acknowledged,
and ``next_n`` is the highest number ever reserved.  When nothing is queued
the log is rewritten (tmp + rename) with what is still needed, so it stays
small.  A torn tail (power cut mid-write) ends the replay there.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

_F = struct.Struct("<cQQQIH")    # kind, k, lo, hi, boot, len; then the payload
_A = struct.Struct("<cQ")        # kind, k
_H = struct.Struct("<cQ")        # kind, next_n
_COMPACT = 256                   # entries written since the last rewrite


class LinkLog:
    """Unacknowledged link frames of one TCU, on disk."""

    def __init__(self, path):
        self.path = Path(path) / "link.log"
        self.queued: list = []          # (k, lo, hi, payload) in arrival order
        self.done: list = []            # (lo, hi) of acknowledged frames, from the log
        self.next_n = 0                 # every number below is taken by some frame
        self.next_k = 0
        self.written = 0
        if self.path.exists():
            self._replay(self.path.read_bytes())
        self._fh = open(self.path, "ab")

    def _replay(self, data: bytes) -> None:
        frames = {}
        off = 0
        while off < len(data):
            kind = data[off:off + 1]
            if kind == b"F" and off + _F.size <= len(data):
                _, k, lo, hi, boot, n = _F.unpack_from(data, off)
                if off + _F.size + n > len(data):
                    break                                   # torn tail
                frames[k] = (k, lo, hi, data[off + _F.size: off + _F.size + n])
                self.next_n = max(self.next_n, hi)
                self.next_k = max(self.next_k, k + 1)
                off += _F.size + n
            elif kind == b"A" and off + _A.size <= len(data):
                k = _A.unpack_from(data, off)[1]
                e = frames.pop(k, None)
                if e is not None and e[2] > e[1]:
                    self.done.append((e[1], e[2]))
                off += _A.size
            elif kind == b"H" and off + _H.size <= len(data):
                self.next_n = max(self.next_n, _H.unpack_from(data, off)[1])
                off += _H.size
            else:
                break                                       # torn or unknown: stop here
        self.queued = sorted(frames.values())

    def add(self, lo: int, hi: int, boot: int, payload: bytes) -> int:
        """Log a frame before it is queued; -> its number ``k``."""
        k = self.next_k
        self.next_k += 1
        self.next_n = max(self.next_n, hi)
        self._fh.write(_F.pack(b"F", k, lo, hi, boot, len(payload)) + payload)
        self._fh.flush()
        self.queued.append((k, lo, hi, payload))
        self.written += 1
        return k

    def ack(self, k: int, done_ranges) -> None:
        """Frame ``k`` is acknowledged.  ``done_ranges``: the (lo, hi)
        ranges the caller still holds acknowledged above its mark (kept
        across a rewrite)."""
        self._fh.write(_A.pack(b"A", k))
        self._fh.flush()
        self.queued = [e for e in self.queued if e[0] != k]
        self.written += 1
        if not self.queued and self.written >= _COMPACT:
            self._rewrite(done_ranges)

    def _rewrite(self, done_ranges) -> None:
        # only what a restart needs: the high-water mark and the ranges
        # acknowledged above the ring's mark (as frames already acknowledged)
        out = bytearray(_H.pack(b"H", self.next_n))
        for lo, hi in sorted(done_ranges):
            k = self.next_k
            self.next_k += 1
            out += _F.pack(b"F", k, lo, hi, 0, 0) + _A.pack(b"A", k)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(bytes(out))
        self._fh.close()
        os.replace(tmp, self.path)
        self._fh = open(self.path, "ab")
        self.written = 0

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None
