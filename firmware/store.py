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
one complete generation exists under one of the three names.

``load``: read every candidate, keep those with the right magic, size and
CRC, and return the payload with the highest ``seq``.  Anything else
(missing, truncated, corrupt, oversized, unreadable) is skipped with a
warning; if nothing is valid, ``load`` returns ``None`` (caller uses safe
defaults) and says so in the warning list.  It never raises.
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


class Store:
    def __init__(self, path, max_payload=1024):
        self.path = path
        self.old = path + ".old"
        self.tmp = path + ".tmp"
        self.max_payload = max_payload
        self.seq = 0
        self.warnings = []

    def _read(self, name, warn):
        """(seq, payload) of a valid record in file ``name``, or None."""
        try:
            with open(name, "rb") as f:
                data = f.read(HDR_LEN + self.max_payload + 1)
        except OSError:
            return None                    # missing: not worth a warning
        except Exception as ex:
            warn.append("store: %s unreadable (%s)" % (name, ex))
            return None
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

    def load(self):
        """Returns ``(payload or None, warnings)``."""
        warn = []
        best = None
        which = None
        for name in (self.path, self.old, self.tmp):
            r = self._read(name, warn)
            if r is not None and (best is None or r[0] > best[0]):
                best = r
                which = name
        if best is None:
            warn.append("store: no valid record in %s, using safe defaults" % self.path)
            self.seq = 0
            self.warnings = warn
            return None, warn
        if which != self.path:
            warn.append("store: using %s (newest valid generation)" % which)
        self.seq = best[0]
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
            hdr = struct.pack(_HDR, _MAGIC, seq, n, 0xFFFF, _record_crc(seq, n, payload))
            with open(self.tmp, "wb") as f:
                f.write(hdr)
                f.write(payload)
            try:
                os.stat(self.path)
                have = True
            except OSError:
                have = False
            if have:
                os.rename(self.path, self.old)
            os.rename(self.tmp, self.path)
        except Exception as ex:    # OSError from the fs, or a failing device
            self.warnings.append("store: save failed (%s)" % ex)
            return False
        self.seq = seq
        return True
