"""Persistent event and fault log (D-2): bounded, rotating, power-loss tolerant.

Files ``<dir>/events.0`` (current, newest) .. ``<dir>/events.<N-1>`` (oldest).
Each event is one fixed-size 32-byte record appended to ``events.0`` and
flushed at once (records the app writes together -- a stage change and its
stop reason, the safety events of one records pass -- in one commit), so a
power cut loses at most the records being written:

    off size field
      0   1  magic 0xE7 (resynchronisation mark)
      1   1  version (2; 1 = older firmware, see below)
      2   2  code    u16, one of the EV_* constants below
      4   4  seq     u32, global record counter: orders records across
                     files and boots (rotation never renumbers; wraps at
                     2**30, so it is a small int on 32-bit ports)
      8   4  time_s  i32, the board's RTC in seconds since the firmware
                     epoch 2020-01-01 00:00 UTC (``rt.calendar``); negative
                     = the board's clock was not set
     12   4  a       i32, meaning per code (see docs/records.md)
     16   4  b       i32
     20   8  text    ASCII, NUL padded (a short tag: cause, exception name)
     28   2  boot    u16, boot counter (this log's count of starts)
     30   2  crc     u16 CRC-16/CCITT-FALSE over bytes 0..29, little-endian

Power-loss behaviour, and why it is safe:
* A torn write leaves a short or corrupt last record.  Readers scan for
  ``magic + valid CRC`` instead of trusting alignment, so the torn bytes are
  skipped and every complete record before (and after) them is still read.
* At start, if ``events.0`` does not end on a clean record boundary the log
  rotates first, so new records are never appended behind garbage.
* Rotation only renames files (``events.i`` -> ``events.i+1``, oldest
  removed first).  A cut in the middle leaves a gap in the names, never a
  duplicated or half-copied record; readers order by ``seq``, not by name.

Storage is bounded: at most ``files * max_bytes_per_file`` bytes.

``log()`` runs on events, not on every tick: it may allocate a little (file
I/O), uses no float and never raises: a full or broken filesystem only
counts ``errors``, because the fail-safe path logs through here.

The same module decodes records (``decode``, ``scan``), so the console
(``recent``) and the host tool (``host_tools/eventlog.py``) share one
definition of the layout and of the event names.

Version 1 records (firmware before the 2020 epoch, still on a board's
flash after an update) carry a u32 ``time_s`` in the board's old epoch:
Unix seconds, or seconds since boot / since 2000 below 10**9.  ``decode``
returns every time in firmware seconds: a version-1 time of 10**9 or more
converted from Unix seconds, a smaller one as -1 (no date known).
"""
import os
import struct
import sys
from array import array

from micropython import const

from rt.calendar import EPOCH_UNIX as _EPOCH_UNIX

_MP = sys.implementation.name == "micropython"
if _MP:
    import micropython

# ---- event codes (append only: the numbers are in every log ever written) --
EV_BOOT = const(1)            # a: 1 = config ok, 0 = bad config; b: reset cause
EV_CONFIG_ERROR = const(2)    # a: index of the error; text: setting (truncated)
EV_STAGE = const(3)           # a: new stage, b: previous stage
EV_STOP = const(4)            # a: CST reason mask, b: CST fault mask; text: why
EV_CEM = const(5)             # a: CEM bits (timeouts the charger reports)
EV_BEM = const(6)             # a: BEM bits (timeouts the BMS reports)
EV_TRIP = const(7)            # a: cause id, b: measured value; text: cause
EV_RISK_RAISED = const(8)     # a: check number (S-n: n), b: level (1..3)
EV_RISK_CLEARED = const(9)    # a: check number, b: level
EV_LOCKOUT = const(10)        # a: check number, b: hours; text: VIN tail
EV_FAILSAFE = const(11)       # text: exception type; a: task index
EV_OPERATOR = const(12)       # a: OP_* action, b: argument
EV_BST = const(13)            # a: BST reason, b: BST fault (BMS stop)
EV_LOCKOUT_CLEARED = const(14)  # a: check number
EV_SESSION = const(15)        # a: telemetry session number; text: VIN tail
EV_INTRUSION = const(16)      # a: gbt.intrusion kind, b: argument (PGN, stage, address)
EV_STORE = const(17)          # a: 1 no usable safety record (charging refused), 0 warnings; b: count
EV_AUTH = const(18)           # a: security.roles AU_* action, b: role; text: command / reason
EV_UPDATE = const(19)         # a: bootseq UP_* action, b: firmware version; text: who

NAMES = ("?", "boot", "config-error", "stage", "stop", "CEM", "BEM", "trip",
         "risk-raised", "risk-cleared", "lockout", "fail-safe", "operator",
         "BST", "lockout-cleared", "session", "intrusion", "store", "auth",
         "update")

# operator actions (EV_OPERATOR a)
OP_START = const(1)
OP_STOP = const(2)
OP_ACK = const(3)             # acknowledge a "needs confirmation" flag
OP_RESET = const(4)           # reset a latched trip / lockout
OP_CONFIG = const(5)          # configuration changed
OP_NAMES = ("?", "start", "stop", "ack", "reset", "config")


def name(code):
    """Name of an event code ("?" for unknown codes)."""
    if 0 <= code < len(NAMES):
        return NAMES[code]
    return "?"


# ---- record layout ---------------------------------------------------------
MAGIC = const(0xE7)
VERSION = const(2)
REC_SIZE = const(32)
FMT = "<BBHIiii8sH"           # bytes 0..29; the CRC follows at 30
_CRC_OFF = const(30)
_I32_MAX = const(0x7FFFFFFF)
_SEQ_MASK = const(0x3FFFFFFF)
_V1_DATE_MIN = const(1000000000)  # version 1: Unix seconds at/above, else no date


def _make_table():
    t = array("H", bytes(512))    # 512 bytes of RAM, reads as small ints
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        t[i] = c & 0xFFFF
    return t


_CRC_TABLE = _make_table()


if _MP:
    # The CRC loop in machine code: ~0.02 kinstr per byte on the target
    # instead of ~0.7 (bytecode: the telemetry's 76-byte status record took
    # 52 kinstr, most of a records pass; docs/performance.md "worst pass").
    # Only MicroPython compiles this; CPython (host tools) uses the loops.
    @micropython.viper
    def _crc_v(buf, start: int, end: int, tab) -> int:
        b = ptr8(buf)
        t = ptr16(tab)
        c = 0xFFFF
        i = start
        while i < end:
            c = ((c << 8) & 0xFFFF) ^ t[((c >> 8) ^ b[i]) & 0xFF]
            i += 1
        return c


def crc16(buf, start, end):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of ``buf[start:end]``.

    Allocation-free (table lookups on small ints); equals
    ``binascii.crc_hqx(data, 0xFFFF)`` on CPython.  Shared with telemetry.
    On MicroPython a buffer within bounds goes through machine code."""
    if _MP and 0 <= start <= end <= len(buf) and not isinstance(buf, list):
        return _crc_v(buf, start, end, _CRC_TABLE)
    t = _CRC_TABLE
    c = 0xFFFF
    for i in range(start, end):
        c = ((c << 8) & 0xFFFF) ^ t[((c >> 8) ^ buf[i]) & 0xFF]
    return c


def crc16_mv(mv):
    """``crc16`` of a whole buffer or memoryview: the same value as
    ``crc16(mv, 0, len(mv))``, about 40 % faster on MicroPython (iterating
    the buffer avoids an index and a subscript per byte; the loop uses a
    stack iterator, so nothing is allocated).  Telemetry CRCs every record
    with it (20+ records per second while charging); machine code on
    MicroPython."""
    if _MP:
        return _crc_v(mv, 0, len(mv), _CRC_TABLE)
    t = _CRC_TABLE
    c = 0xFFFF
    for x in mv:
        c = ((c & 0xFF) << 8) ^ t[(c >> 8) ^ x]
    return c


def valid_at(data, off):
    """True if a complete record with a good CRC starts at ``data[off]``."""
    if off + REC_SIZE > len(data) or data[off] != MAGIC:
        return False
    crc = data[off + _CRC_OFF] | (data[off + _CRC_OFF + 1] << 8)
    return crc16(data, off, off + _CRC_OFF) == crc


def decode(data, off=0):
    """One record -> ``(seq, boot, time_s, code, name, a, b, text)``.

    The caller has checked it with ``valid_at``."""
    _m, ver, code, seq, t, a, b, text, boot = struct.unpack_from(FMT, data, off)
    if ver == 1:
        # u32 in the old epoch (read as i32 here: the same value until 2038)
        t = t - _EPOCH_UNIX if t >= _V1_DATE_MIN else -1
    # ASCII only: a multi-byte character cut at byte 8 must not make the
    # record undecodable, so anything outside ASCII reads as "?".
    s = ""
    for c in text:
        if not c:
            break
        s += chr(c) if 32 <= c < 127 else "?"
    return (seq, boot, t, code, name(code), a, b, s)


def scan(data):
    """Decode every valid record in a file's bytes; skip torn/corrupt bytes.

    Returns ``(records, skipped_bytes)``.  Resynchronises byte by byte on a
    bad magic or CRC, so a torn record in the middle of a file (power cut,
    then appends after the reboot) costs only that record."""
    recs = []
    skipped = 0
    off = 0
    n = len(data)
    while off + REC_SIZE <= n:
        if valid_at(data, off):
            recs.append(decode(data, off))
            off += REC_SIZE
        else:
            off += 1
            skipped += 1
    return recs, skipped + (n - off)


def _clamp32(v):
    if v > _I32_MAX:
        return _I32_MAX
    if v < -_I32_MAX - 1:
        return -_I32_MAX - 1
    return v


class EventLog:
    """Append-only event log in ``dirname`` with ``files`` rotating files of
    at most ``max_bytes_per_file`` bytes each (rounded down to whole
    records, at least one record)."""

    def __init__(self, dirname, max_bytes_per_file=4096, files=4):
        self.dir = dirname
        n = (max_bytes_per_file // REC_SIZE) * REC_SIZE
        self.max_bytes = n if n >= REC_SIZE else REC_SIZE
        self.files = files if files >= 1 else 1
        self.buf = bytearray(REC_SIZE)
        self.seq = 0              # next record number
        self.boot = 0
        self.size = 0             # bytes in events.0
        self.errors = 0           # failed writes / renames (never raised)
        self.written = 0
        self.rotations = 0
        self.torn = 0             # torn tails found at start
        self.f = None
        try:
            os.mkdir(dirname)
        except OSError:
            pass                  # exists (or cannot be made: writes count errors)
        self._recover()

    def path(self, i):
        return "%s/events.%d" % (self.dir, i)

    def _read(self, i):
        try:
            with open(self.path(i), "rb") as f:
                return f.read()
        except OSError:
            return b""

    def _recover(self):
        """Find the last seq and boot; rotate away a torn tail."""
        last = None
        for i in range(self.files):
            data = self._read(i)
            if i == 0:
                self.size = len(data)
                if len(data) % REC_SIZE or (data and not valid_at(data, len(data) - REC_SIZE)):
                    self.torn += 1
            recs, _ = scan(data)
            for r in recs:
                if last is None or r[0] > last[0]:
                    last = r
            if last is not None:
                break             # newer files hold the higher numbers
        if last is not None:
            self.seq = last[0] + 1
            self.boot = last[1] + 1
        if self.torn:
            self._rotate()

    def _rotate(self):
        """events.i -> events.i+1 (oldest dropped); next write starts events.0."""
        self._close()
        try:
            os.remove(self.path(self.files - 1))
        except OSError:
            pass
        for i in range(self.files - 2, -1, -1):
            try:
                os.rename(self.path(i), self.path(i + 1))
            except OSError:
                pass              # that file does not exist yet
        self.size = 0
        self.rotations += 1

    def _close(self):
        if self.f is not None:
            try:
                self.f.close()
            except OSError:
                pass
            self.f = None

    def close(self):
        self._close()

    def log(self, now_s, code, a=0, b=0, text8=None, sync=True):
        """Append one event.  ``text8``: str/bytes, first 8 bytes kept.

        ``sync`` False: the record stays in the file's cache until the next
        ``commit()`` (or a later ``log`` with sync, or a rotation): a batch
        of records written together costs one littlefs commit instead of
        one each (150..500 kinstr on the target, most of the append).

        Returns True if the record reached the file (its cache, without
        ``sync``).  Never raises."""
        buf = self.buf
        try:
            t = text8.encode() if isinstance(text8, str) else (text8 or b"")
            struct.pack_into(FMT, buf, 0, MAGIC, VERSION, code & 0xFFFF,
                             self.seq & _SEQ_MASK, _clamp32(now_s),
                             _clamp32(a), _clamp32(b), t[:8], self.boot & 0xFFFF)
            crc = crc16(buf, 0, _CRC_OFF)
            buf[_CRC_OFF] = crc & 0xFF
            buf[_CRC_OFF + 1] = crc >> 8
        except Exception:
            self.errors += 1      # e.g. text of a wrong type: drop, count
            return False
        self.seq += 1
        try:
            if self.size + REC_SIZE > self.max_bytes:
                self._rotate()
            if self.f is None:
                self.f = open(self.path(0), "ab")
            self.f.write(buf)
            if sync:
                self.f.flush()    # commit now: a power cut loses <= 1 record
            self.size += REC_SIZE
            self.written += 1
            return True
        except OSError:
            self.errors += 1
            self._close()
            return False

    def commit(self):
        """Flush records written with ``sync=False``.  Never raises."""
        if self.f is not None:
            try:
                self.f.flush()
            except OSError:
                self.errors += 1
                self._close()

    def read_all(self):
        """Every valid record of every file, oldest first (by seq)."""
        out = []
        for i in range(self.files - 1, -1, -1):
            recs, _ = scan(self._read(i))
            out.extend(recs)
        out.sort(key=lambda r: r[0])
        return out

    def recent(self, n=20):
        """The last ``n`` events, oldest first, as decoded tuples
        ``(seq, boot, time_s, code, name, a, b, text)``.  Reads newest
        files first and stops once it has enough (console command)."""
        out = []
        for i in range(self.files):
            recs, _ = scan(self._read(i))
            out = recs + out
            if len(out) >= n:
                break
        out.sort(key=lambda r: r[0])
        return out[-n:] if n > 0 else []
