"""Encoders of the charger -> BMS messages (GB/T 27930 spec section 3).

Import these through ``gbt.messages``.  Each ``enc_xxx(buf, ...)`` writes the
payload into the caller's preallocated ``buf`` (len >= 8), returns the DLC to
send, and allocates nothing (scaled ints in, byte stores out).

Fill rule (spec clause 7.9): all 8 bytes of ``buf`` are first set to 0xFF,
so reserved bits/bytes and bytes beyond the DLC are 1s.  Arguments are
clamped to the field's encodable range instead of raising: an encoder is
called from the 10 ms session tick and must never fail there.  Currents are
given as positive *charging* current in 0.1 A and written with the -400 A
offset (raw = 4000 - dA, clamped to 0..4000 dA).
"""
import micropython
from micropython import const

# CST SPN3521 stop reason (byte 1), value 01 already in place per 2-bit field
CST_R_CONDITION = const(0x01)
CST_R_MANUAL = const(0x04)
CST_R_FAULT = const(0x10)
CST_R_BMS = const(0x40)
# CST SPN3522 stop fault (bytes 2-3, little-endian 16 bit)
CST_F_OVERTEMP = const(0x001)
CST_F_CONNECTOR = const(0x004)
CST_F_INTERNAL_OT = const(0x010)
CST_F_NO_ENERGY = const(0x040)
CST_F_ESTOP = const(0x100)
CST_F_OTHER = const(0x400)
# 2023-A profile only (UNCONFIRMED bits 13-14 / 15-16, spec 1.1)
CST_F_SELFCHECK = const(0x1000)
CST_F_PRECHARGE = const(0x4000)
# CST SPN3523 stop error (byte 4)
CST_E_CURRENT = const(0x01)
CST_E_VOLTAGE = const(0x04)

# CEM: little-endian 32-bit image of the 4 bytes, 01 in each 2-bit field
CEM_BRM = const(0x00000001)
CEM_BCP = const(0x00000100)
CEM_BRO = const(0x00000400)
CEM_BCS = const(0x00010000)
CEM_BCL = const(0x00040000)
CEM_BST = const(0x00100000)
CEM_BSD = const(0x01000000)

# Protocol profiles (docs/protocol.md "Profiles")
PROFILE_2015 = const(0)
PROFILE_2023A = const(1)

_I_OFFSET = const(4000)      # -400 A in 0.1 A
_MAX_MIN = const(600)        # CCS/CSD minutes field range 0..600


@micropython.viper
def _fill(buf):
    # (machine code: 8 rounds of bytecode are ~3 kinstr on the target, and
    # every encoder starts here)
    b = ptr8(buf)
    i = 0
    while i < 8:
        b[i] = 0xFF
        i += 1


def _clamp(v, lo, hi):
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


def _u16(buf, off, v):
    buf[off] = v & 0xFF
    buf[off + 1] = (v >> 8) & 0xFF


def _cur(dA):
    """Charging current (0.1 A) -> wire raw with the -400 A offset."""
    return _I_OFFSET - _clamp(dA, 0, _I_OFFSET)


def _bcd(v):
    v = _clamp(v, 0, 99)
    return ((v // 10) << 4) | (v % 10)


def enc_chm(buf, version=0x000101):
    """CHM: protocol version, V1.1 = 01 01 00 (little-endian 0x000101)."""
    _fill(buf)
    buf[0] = version & 0xFF
    buf[1] = (version >> 8) & 0xFF
    buf[2] = (version >> 16) & 0xFF
    return 3


def _no32(buf, off, no):
    """Charger number at ``buf[off:off+4]``, LE: an int, or its 4 bytes
    already split (``SessionConfig.charger_no_le``; allocation-free for any
    number: an int >= 2**30 is a long on 32-bit ports and its shifts
    allocate)."""
    if isinstance(no, int):
        buf[off] = no & 0xFF
        buf[off + 1] = (no >> 8) & 0xFF
        buf[off + 2] = (no >> 16) & 0xFF
        buf[off + 3] = (no >> 24) & 0xFF
    else:
        buf[off] = no[0]
        buf[off + 1] = no[1]
        buf[off + 2] = no[2]
        buf[off + 3] = no[3]


def enc_crm(buf, recognised, charger_no, region):
    """CRM: 0x00 / 0xAA, charger number (32 bit LE), region (<= 3 ASCII bytes).

    ``region`` is bytes/bytearray (pre-encode the config string once; a str
    works but allocates one char per byte) or None;
    missing bytes are 0xFF.  ``charger_no``: an int, or its 4 LE bytes (the
    session passes those: no long-int arithmetic for numbers >= 2**30)."""
    _fill(buf)
    buf[0] = 0xAA if recognised else 0x00
    _no32(buf, 1, charger_no)
    if region is not None:
        n = len(region)
        if n > 3:
            n = 3
        for i in range(n):
            c = region[i]
            if isinstance(c, str):      # a str was passed: tolerate it
                c = ord(c)
            buf[5 + i] = c & 0xFF
    return 8


def enc_cts(buf, year, month, day, hour, minute, second):
    """CTS: compressed BCD s, min, h, day, month, year low 2 digits, century."""
    _fill(buf)
    buf[0] = _bcd(second)
    buf[1] = _bcd(minute)
    buf[2] = _bcd(hour)
    buf[3] = _bcd(day)
    buf[4] = _bcd(month)
    year = _clamp(year, 0, 9999)
    buf[5] = _bcd(year % 100)
    buf[6] = _bcd(year // 100)
    return 7


def enc_cml(buf, max_v, min_v, max_i, min_i):
    """CML: max/min output voltage (0.1 V), max/min output current (0.1 A)."""
    _fill(buf)
    _u16(buf, 0, _clamp(max_v, 0, 0xFFFE))
    _u16(buf, 2, _clamp(min_v, 0, 0xFFFE))
    _u16(buf, 4, _cur(max_i))
    _u16(buf, 6, _cur(min_i))
    return 8


def enc_cro(buf, ready):
    """CRO: 0xAA ready, 0x00 not ready."""
    _fill(buf)
    buf[0] = 0xAA if ready else 0x00
    return 1


def enc_ccs(buf, v, i, minutes, permit, dlc=8):
    """CCS: output V (0.1 V), I (0.1 A charging), minutes (0..600), permit.

    Byte 7 = 0xFC | permit (01 allowed, 00 pause); byte 8 = 0xFF.  ``dlc=7``
    is the 2023-A / ENPLUS variant (spec section 6 item 2); anything else is
    sent as 8."""
    # every 50 ms: the clamps and stores of _fill/_u16/_cur inline (each
    # helper call costs ~600 target instructions)
    if v < 0:
        v = 0
    elif v > 0xFFFE:
        v = 0xFFFE
    if i < 0:
        i = 0
    elif i > _I_OFFSET:
        i = _I_OFFSET
    i = _I_OFFSET - i
    if minutes < 0:
        minutes = 0
    elif minutes > _MAX_MIN:
        minutes = _MAX_MIN
    buf[0] = v & 0xFF
    buf[1] = v >> 8
    buf[2] = i & 0xFF
    buf[3] = i >> 8
    buf[4] = minutes & 0xFF
    buf[5] = minutes >> 8
    buf[6] = 0xFD if permit else 0xFC
    buf[7] = 0xFF
    return 7 if dlc == 7 else 8


def enc_cst(buf, reason, fault, error, profile=PROFILE_2015):
    """CST: OR-ed ``CST_R_*``, ``CST_F_*``, ``CST_E_*`` masks.

    Only the value 01 can be set per 2-bit field (other bits of the masks are
    dropped).  Reserved bits are 1: fault bits 13-16 with the 2015 profile,
    error bits 5-8 always."""
    _fill(buf)
    buf[0] = reason & 0x55
    if profile == PROFILE_2023A:
        f = fault & 0x5555
    else:
        f = (fault & 0x0555) | 0xF000
    _u16(buf, 1, f)
    buf[3] = (error & 0x05) | 0xF0
    return 4


def enc_csd(buf, minutes, energy, charger_no):
    """CSD: minutes (0..600), energy (0.1 kWh, 0..10000), charger number
    (an int or its 4 LE bytes, as ``enc_crm``).

    The "offset 1" some transcriptions give for the charger number is
    UNCONFIRMED (spec section 6 item 9): sent as is, like CRM."""
    _fill(buf)
    _u16(buf, 0, _clamp(minutes, 0, _MAX_MIN))
    _u16(buf, 2, _clamp(energy, 0, 10000))
    _no32(buf, 4, charger_no)
    return 8


def enc_cem(buf, bits):
    """CEM: OR of ``CEM_*``.  Unused bits are 1 (byte fills 0xFC, 0xF0,
    0xC0, 0xFC); only the value 01 can be set per field."""
    _fill(buf)
    buf[0] = (bits & 0x01) | 0xFC
    buf[1] = ((bits >> 8) & 0x05) | 0xF0
    buf[2] = ((bits >> 16) & 0x15) | 0xC0
    buf[3] = ((bits >> 24) & 0x01) | 0xFC
    return 4
