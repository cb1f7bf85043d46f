"""Power-loss-safe record store on the board filesystem (requirement D-1/D-2,
used by the safety lockout state).

One record (bytes, at most ``max_payload``) per store, kept in up to three
files next to each other::

    <path>       current generation
    <path>.old   previous generation
    <path>.tmp   a save in progress

File format (little-endian), 16-byte header then the payload::

    0  4  magic  b"SRC1"
    4  4  seq    generation number, +1 per save
    8  2  len    payload length
    10 2  0xFFFF reserved
    12 4  crc32  over bytes 4..11 and the payload

``save``: write the whole new record to ``.tmp`` (closed = committed on
littlefs), rename the current file to ``.old`` (replacing the previous
``.old``), rename ``.tmp`` to the current name.  ``os.rename`` replaces
its target atomically on littlefs and POSIX, so at every instant at least
one complete generation exists under one of the three names.  The
generation the consumer is using is never the one replaced: if it was
loaded from ``.old`` (the current file was rejected), the current file is
not moved to ``.old`` but replaced; if it was loaded from ``.tmp`` (a save
cut short before its renames), the renames are finished first.

``load``: read every candidate, keep those with the right magic, size and
CRC, and try them newest first (``seq`` compared in serial-number
arithmetic, so the generation after 0xFFFFFFFF is 0 and still the newer):
the first one the consumer's ``accept(payload)`` takes (returns None) is
returned; one it rejects (returns a reason: a newer record version, a
malformed payload under a valid CRC) is skipped with a warning, like a
corrupt one.  Anything else (missing, truncated, corrupt, oversized,
unreadable) is skipped with a warning; if nothing is usable, ``load``
returns ``None`` and says so in the warning list, and ``present`` tells
the caller whether any file was there at all (nothing there = a fresh
board; something there but nothing usable = the state is unknown: the
safety supervisor then refuses to charge, docs/safety.md).  It never
raises.
"""
import os
import struct

try:
    from binascii import crc32 as _crc32
except ImportError:   # port built without binascii.crc32
    _crc32 = None

_MAGIC = b"SRC1"
_HDR = "<4sIHHI"
HDR_LEN = 16


def crc32(data, crc=0):
    """CRC-32 (IEEE, same as binascii.crc32)."""
    if _crc32 is not None:
        return _crc32(data, crc) & 0xFFFFFFFF
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _record_crc(seq, n, payload):
    h = struct.pack("<IHH", seq, n, 0xFFFF)
    return crc32(payload, crc32(h))


def newer(a, b):
    """True if generation ``a`` is newer than ``b`` (serial-number arithmetic,
    RFC 1982 style on 32 bits: valid while the two are < 2**31 apart)."""
    d = (a - b) & 0xFFFFFFFF
    return 0 < d < 0x80000000


class Store:
    def __init__(self, path, max_payload=1024):
        self.path = path
        self.old = path + ".old"
        self.tmp = path + ".tmp"
        self.max_payload = max_payload
        self.seq = 0
        self.warnings = []
        self.accept = None        # consumer's check: fn(payload) -> None or reason
        self.present = False      # a candidate file existed at the last load
        self.good = None          # file name of the generation in use, or None

    def _read(self, name, warn):
        """(seq, payload) of a valid record in file ``name``, or None."""
        try:
            with open(name, "rb") as f:
                data = f.read(HDR_LEN + self.max_payload + 1)
        except OSError:
            return None                    # missing: not worth a warning
        except Exception as ex:
            self.present = True
            warn.append("store: %s unreadable (%s)" % (name, ex))
            return None
        self.present = True
        try:
            if len(data) < HDR_LEN:
                warn.append("store: %s truncated (%d bytes)" % (name, len(data)))
                return None
            magic, seq, n, _, crc = struct.unpack_from(_HDR, data, 0)
            if magic != _MAGIC:
                warn.append("store: %s bad magic" % name)
                return None
            if n > self.max_payload or len(data) != HDR_LEN + n:
                warn.append("store: %s bad length" % name)
                return None
            payload = data[HDR_LEN:]
            if _record_crc(seq, n, payload) != crc:
                warn.append("store: %s CRC mismatch" % name)
                return None
            return seq, payload
        except Exception as ex:
            warn.append("store: %s invalid (%s)" % (name, ex))
            return None

    def load(self, accept=None):
        """Returns ``(payload or None, warnings)``: the newest valid
        generation that ``accept`` (argument, else ``self.accept``; None =
        any) takes."""
        if accept is None:
            accept = self.accept
        warn = []
        self.present = False
        cands = []
        for name in (self.path, self.old, self.tmp):
            r = self._read(name, warn)
            if r is not None:
                cands.append((r[0], r[1], name))
        # newest first (at most three: a selection sort)
        order = []
        while cands:
            k = 0
            for j in range(1, len(cands)):
                if newer(cands[j][0], cands[k][0]):
                    k = j
            order.append(cands.pop(k))
        # the next save must be newer than every valid generation, used or not
        self.seq = order[0][0] if order else 0
        self.good = None
        best = None
        for c in order:
            why = None
            if accept is not None:
                try:
                    why = accept(c[1])
                except Exception as ex:
                    why = "rejected (%s)" % ex
            if why:
                warn.append("store: %s rejected: %s" % (c[2], why))
                continue
            best = c
            break
        if best is None:
            warn.append("store: no valid record in %s" % self.path)
            self.warnings = warn
            return None, warn
        self.good = best[2]
        if best[2] != self.path:
            warn.append("store: using %s (newest usable generation)" % best[2])
        self.warnings = warn
        return best[1], warn

    def save(self, payload):
        """Write a new generation.  Returns True on success; on failure the
        previous generation is still loadable and a warning is appended."""
        n = len(payload)
        if n > self.max_payload:
            self.warnings.append("store: record of %d bytes > max %d, not saved"
                                 % (n, self.max_payload))
            return False
        seq = (self.seq + 1) & 0xFFFFFFFF
        try:
            if self.good == self.tmp:
                # in use: a complete .tmp whose save was cut before its renames
                self._promote()
            hdr = struct.pack(_HDR, _MAGIC, seq, n, 0xFFFF, _record_crc(seq, n, payload))
            with open(self.tmp, "wb") as f:
                f.write(hdr)
                f.write(payload)
            if self.good != self.old and self._exists(self.path):
                # keep the generation in use as .old; a current file that
                # was rejected (good = .old) is replaced, not kept
                os.rename(self.path, self.old)
            os.rename(self.tmp, self.path)
        except Exception as ex:    # OSError from the fs, or a failing device
            self.warnings.append("store: save failed (%s)" % ex)
            return False
        self.seq = seq
        self.good = self.path
        return True

    def _promote(self):
        if self._exists(self.path):
            os.rename(self.path, self.old)
        os.rename(self.tmp, self.path)
        self.good = self.path

    @staticmethod
    def _exists(name):
        try:
            os.stat(name)
            return True
        except OSError:
            return False
