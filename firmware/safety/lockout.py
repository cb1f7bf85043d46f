"""VIN lockout, needs-confirmation flag and latched faults (persisted).

Requirements section 4:
- the same warning (check id, any level) raised for the same vehicle (VIN)
  ``lockout.count`` (3) or more times within one calendar day limits that
  vehicle for ``lockout.hours`` (12 h): ``lockout.mode`` "refuse" (no
  start) or "cap" (start allowed, current capped at ``lockout.cap_dA``);
- SOC anomalies (S-12, S-13) set a needs-confirmation flag that stays
  until an operator acknowledges it (``acknowledge``); while it is set the
  vehicle that caused it is refused (``lockout.confirm_blocks`` = 1);
- latched fault bits owned by the supervisor (E-stop latch, contactor
  fault) ride along so that they too survive reboot and power loss;
- ``L_STORE``: the persisted record existed but no generation of it could
  be used (corrupt, or a valid CRC around a record ``unpack`` rejects), so
  the other latches are unknown: the supervisor sets it at boot and refuses
  to charge until an operator clears it (``clear_store_fault``).

Time is wall-clock seconds since the firmware epoch 2020-01-01 00:00 UTC
(``rt.calendar``: ``board.rtc_s()``, a small int on 32-bit ports); the
calendar day is local time ``(wall_s + tz_min*60) // 86400`` = days since
2020-01-01.  Without a set RTC (wall_s = 0, or a negative clock that
stands still) everything falls into one "day": counting stays
conservative.

Record version 2 stores days and times in the firmware epoch (signed).
Version 1 (older firmware) stored them in the board's old RTC epoch: Unix
seconds (SIL, QEMU) or MicroPython's 2000 epoch (stm32, esp32 without a
board ``rtc_s``).  ``unpack`` converts a version-1 record (a value of
10**9 s or more -- 11575 days -- is Unix-based, a smaller one 2000-based;
unambiguous for dates from 2001 to 2031), so a firmware update keeps
every lockout, latch and pending confirmation; the next save writes
version 2.  An older firmware rejects version 2 (the store then falls
back to ``.old``, else refuses to charge until ``clear_store_fault``).

A vehicle without a VIN (BRM without the optional VIN) cannot be
identified, so its warnings are not counted (they are still raised,
recorded and acted on).

This runs from the supervisor's slow tick, never from the fast paths:
it may allocate.  ``pack``/``unpack`` give the bytes for ``store.Store``.
"""
import struct
import config
from rt.calendar import (EPOCH_UNIX as _EPOCH_UNIX, EPOCH_2000 as _EPOCH_2000,
                         EPOCH_DAYS_UNIX as _EPOCH_DAYS_UNIX,
                         EPOCH_DAYS_2000 as _EPOCH_DAYS_2000)

CONFIG_SCHEMA = (
    ("lockout.enable", 1, 0, 1, "-", "VIN lockout on"),
    ("lockout.count", 3, 1, 100, "-", "Same warning this many times per calendar day locks the VIN"),
    ("lockout.hours", 12, 1, 168, "h", "Lockout duration"),
    ("lockout.mode", "refuse", None, None, "-", "refuse | cap: what a locked VIN gets"),
    ("lockout.cap_dA", 100, 0, 10000, "0.1 A", "Current cap in mode cap"),
    ("lockout.tz_min", 480, -720, 840, "min", "Local time offset for the calendar day (China: +480)"),
    ("lockout.slots", 16, 4, 32, "-", "VIN/check entries kept (oldest unlocked evicted)"),
    ("lockout.confirm_blocks", 1, 0, 1, "-", "Refuse the VIN with a pending SOC confirmation"),
)
config.register(CONFIG_SCHEMA)


def _cross(c):
    if c["lockout.mode"] not in ("refuse", "cap"):
        return "lockout.mode must be 'refuse' or 'cap'"
    mb = config.get(c, "store.max_bytes")
    need = record_bytes(config.get(c, "lockout.slots"))
    if mb < need:
        # a smaller store would refuse every save: latches silently unsaved
        return ("store.max_bytes (%d) must hold a full lockout record: >= %d bytes "
                "with lockout.slots = %d" % (mb, need, c["lockout.slots"]))
    return None


if _cross not in config.CROSS_CHECKS:
    config.CROSS_CHECKS.append(_cross)

# latched bits (set/cleared by the supervisor)
L_ESTOP = 0x01
L_CONTACTOR = 0x02
L_STORE = 0x04        # persisted state unusable: latches unknown

OK = 0
LOCKED = 1
CAPPED = 2
CONFIRM = 3

_VERSION = 2
_HDR = "<BBBB"         # version, latched, confirm check id, entry count
_CONF = "<B17si"       # confirm vin length, vin, time set (wall s)
_ENT = "<B17sBBii"     # vin length, vin, check id, count, day, lock until (wall s)
# version 1: the same sizes, u32 times and days in the board's old epoch
_CONF_V1 = "<B17sI"
_ENT_V1 = "<B17sBBII"
_V1_UNIX_S = 1000000000     # version-1 seconds at/above: Unix epoch, else 2000
_V1_UNIX_DAYS = 11575       # the same threshold in days


def _v1_s(t):
    """A version-1 wall time -> firmware seconds (0 stays 0: "never")."""
    if t == 0:
        return 0
    return t - (_EPOCH_UNIX if t >= _V1_UNIX_S else _EPOCH_2000)


def _v1_day(d):
    return d - (_EPOCH_DAYS_UNIX if d >= _V1_UNIX_DAYS else _EPOCH_DAYS_2000)


def record_bytes(slots):
    """Size of a packed record with ``slots`` entries (the largest one)."""
    return (struct.calcsize(_HDR) + struct.calcsize(_CONF)
            + struct.calcsize(_ENT) * slots)


def vin_key(vin):
    """VIN as bytes without 0x00/0xFF fill; b"" if none."""
    if not vin:
        return b""
    b = bytes(vin)
    n = len(b)
    while n and (b[n - 1] == 0 or b[n - 1] == 0xFF):
        n -= 1
    return b[:n] if n <= 17 else b[:17]


def _i32(v):
    """Clamp to the record's signed 32-bit fields (a wild RTC must not make
    ``pack`` raise: the latches would not be saved)."""
    if v > 0x7FFFFFFF:
        return 0x7FFFFFFF
    if v < -0x80000000:
        return -0x80000000
    return v


def _locked(e, wall_s):
    """Entry ``e`` locks its VIN at ``wall_s``.  ``until`` 0 = never locked
    (a clock that is not set reads negative, so "0 > wall_s" alone would
    lock every entry)."""
    return e[4] != 0 and e[4] > wall_s


class Lockout:
    def __init__(self, c):
        self.enable = config.get(c, "lockout.enable")
        self.count = config.get(c, "lockout.count")
        self.secs = config.get(c, "lockout.hours") * 3600
        self.mode_cap = config.get(c, "lockout.mode") == "cap"
        self.cap_dA = config.get(c, "lockout.cap_dA")
        self.tz_s = config.get(c, "lockout.tz_min") * 60
        self.slots = config.get(c, "lockout.slots")
        self.confirm_blocks = config.get(c, "lockout.confirm_blocks")
        self.clear()

    def clear(self):
        self.entries = []       # [vin bytes, check, count, day, until]
        self.latched = 0
        self.confirm = 0        # check id that needs confirmation, 0 = none
        self.confirm_vin = b""
        self.confirm_t = 0
        self.dirty = False

    def day_of(self, wall_s):
        return (wall_s + self.tz_s) // 86400

    def note(self, vin, check, wall_s):
        """One raised warning.  Returns the new count if this locks the VIN
        (count reached), else 0."""
        if not self.enable:
            return 0
        v = vin_key(vin)
        if not v:
            return 0
        day = self.day_of(wall_s)
        e = None
        for x in self.entries:
            if x[0] == v and x[1] == check:
                e = x
                break
        if e is None:
            e = [v, check, 0, day, 0]
            self._insert(e, wall_s)
        if e[3] != day:
            e[2] = 0
            e[3] = day
        e[2] += 1
        self.dirty = True
        if e[2] >= self.count:
            u = wall_s + self.secs
            e[4] = u if u != 0 else 1     # 0 means "no lock"
            return e[2]
        return 0

    def _insert(self, e, wall_s):
        if len(self.entries) >= self.slots:
            # evict: an unlocked entry with the oldest day, else the lock
            # that ends first
            best = 0
            for k in range(1, len(self.entries)):
                a = self.entries[k]
                b = self.entries[best]
                la = _locked(a, wall_s)
                lb = _locked(b, wall_s)
                ka = (la, a[4] if la else a[3])
                kb = (lb, b[4] if lb else b[3])
                if ka < kb:
                    best = k
            self.entries.pop(best)
        self.entries.append(e)

    def set_confirm(self, vin, check, wall_s):
        self.confirm = check
        self.confirm_vin = vin_key(vin)
        self.confirm_t = wall_s
        self.dirty = True

    def acknowledge(self):
        had = self.confirm
        self.confirm = 0
        self.confirm_vin = b""
        self.dirty = True
        return had

    def set_latch(self, bits):
        if self.latched & bits != bits:
            self.latched |= bits
            self.dirty = True

    def clear_latch(self, bits):
        if self.latched & bits:
            self.latched &= ~bits
            self.dirty = True

    def status(self, vin, wall_s):
        """(OK | LOCKED | CAPPED | CONFIRM, check id, lock until)."""
        v = vin_key(vin)
        if v and self.confirm and self.confirm_blocks and v == self.confirm_vin:
            return CONFIRM, self.confirm, 0
        if not self.enable or not v:
            return OK, 0, 0
        until = 0
        chk = 0
        found = False
        for e in self.entries:
            if e[0] == v and _locked(e, wall_s) and (not found or e[4] > until):
                until = e[4]
                chk = e[1]
                found = True
        if found:
            return (CAPPED if self.mode_cap else LOCKED), chk, until
        return OK, 0, 0

    def pack(self):
        out = bytearray(struct.calcsize(_HDR) + struct.calcsize(_CONF)
                        + struct.calcsize(_ENT) * len(self.entries))
        struct.pack_into(_HDR, out, 0, _VERSION, self.latched & 0xFF,
                         self.confirm & 0xFF, len(self.entries))
        o = struct.calcsize(_HDR)
        struct.pack_into(_CONF, out, o, len(self.confirm_vin), self.confirm_vin,
                         _i32(self.confirm_t))
        o += struct.calcsize(_CONF)
        for e in self.entries:
            struct.pack_into(_ENT, out, o, len(e[0]), e[0], e[1] & 0xFF, e[2] & 0xFF,
                             _i32(e[3]), _i32(e[4]))
            o += struct.calcsize(_ENT)
        return bytes(out)

    def unpack(self, data):
        """Load from ``pack`` bytes.  Returns an error string or None; on
        error the state is left cleared (safe defaults)."""
        self.clear()
        try:
            ver, lat, conf, n = struct.unpack_from(_HDR, data, 0)
            if ver != _VERSION and ver != 1:
                return "lockout record version %d unknown" % ver
            v1 = ver == 1
            fconf = _CONF_V1 if v1 else _CONF
            fent = _ENT_V1 if v1 else _ENT
            o = struct.calcsize(_HDR)
            cl, cv, ct = struct.unpack_from(fconf, data, o)
            o += struct.calcsize(fconf)
            if cl > 17 or n > 64 or len(data) != o + n * struct.calcsize(fent):
                return "lockout record malformed"
            if v1:
                ct = _v1_s(ct)
            ents = []
            for k in range(n):
                vl, v, chk, cnt, day, until = struct.unpack_from(fent, data, o)
                o += struct.calcsize(fent)
                if vl > 17 or vl == 0:
                    return "lockout record malformed"
                if v1:
                    day = _v1_day(day)
                    until = _v1_s(until)
                ents.append([bytes(v[:vl]), chk, cnt, day, until])
            self.entries = ents[-self.slots:] if len(ents) > self.slots else ents
            self.latched = lat
            self.confirm = conf
            self.confirm_vin = bytes(cv[:cl])
            self.confirm_t = ct
        except Exception as ex:   # any malformed input: defaults + message
            self.clear()
            return "lockout record unreadable (%s)" % ex
        self.dirty = False
        return None


_STORE_SCHEMA = (
    ("store.path", "safety.rec", None, None, "-", "File name (in the state directory) of the persisted safety state (lockout, latches): 1..32 of A-Z a-z 0-9 . _ -"),
    ("store.max_bytes", 1024, 128, 8192, "bytes", "Max persisted record size; must hold a full lockout record: >= 26 + 28 x lockout.slots"),
)
config.register(_STORE_SCHEMA)
