"""Decoders of the BMS -> charger messages (GB/T 27930 spec section 3).

Import these through ``gbt.messages``; the battery detail messages
(BMV, BMT, BSP) are decoded in ``gbt.decdetail``.  ``dec_xxx(data, n, bms) -> status``:
``data`` a bytearray/bytes/memoryview holding ``n`` received bytes, ``bms`` a
``gbt.bmsdata.BmsData`` written in place.  Allocation-free for every input
(byte indexing and small-int arithmetic only) and never raises.

Status: ``OK``; ``E_LEN`` (length wrong, or ``n`` outside 0..len(data):
message ignored, bms untouched); ``E_RANGE`` (a value outside its legal
range: whole message rejected, bms untouched); ``E_UNKNOWN`` (``decode``
given a PGN that is not a BMS -> charger message).  Messages are validated
completely before the first field is written, so a rejected message never
leaves ``bms`` half updated.

Rules (full table with reasons in docs/protocol.md):
* Single-frame / TP messages: ``n`` >= the defined length is accepted, extra
  bytes (DLC-8 padding) are ignored.  BRM: 8..49.  BMV: even, 2..512.
  BMT: 1..128.  BSP: 1..16.
* Values the charger *acts on* (BHM/BCP limits, BCL demand, BRO) must be
  legal, else ``E_RANGE``.  A BCL current demand or a BCP max current that
  would mean discharge is rejected.
* Values the safety checks S-1..S-13 *watch* pass through as received even
  beyond the nominal range (SOC > 100 %, demand above the BCP limit,
  temperatures above 200 degC) so that the checks can fire; only encodings
  that are physically impossible are rejected (a cell voltage > 24 V).
* All-ones fill ("not available") becomes ``NA`` (-1) in informational and
  measured fields.
* 2-bit states: ``10`` (untrusted) and ``11`` (not available) keep the
  previous state (Annex C.3), except BSM cell-voltage / SOC state where
  ``10`` means "too low" and is stored.
* Every stored int is below 2**30 (small int on 32-bit ports): BEM keeps
  the low 30 bits of its 32-bit image.
"""
from micropython import const

from gbt.bmsdata import (NA, OK, E_LEN, E_RANGE, E_UNKNOWN, T_OFFSET as _T_OFFSET,
                         CELL_MAX as _CELL_MAX, CELL_NA as _CELL_NA, BMT_MAX as _BMT_MAX,
                         bad_len as _bad_len)
from gbt import decdetail       # BMV, BMT, BSP
from gbt import ids             # (the table below only: one global, not 13)

_I_OFFSET = const(4000)      # -400 A offset, 0.1 A
_TEMP_MAX_RAW = const(250)   # 200 degC: BCP max temperature range
_REMAIN_MAX = const(600)     # BCS remaining minutes "send 600 if longer"
_BRM_MAX = const(49)
_VIN_OFF = const(24)         # BRM bytes 25..41
_VIN_LEN = const(17)


def _u16(d, o):
    return d[o] | (d[o + 1] << 8)


def _merge2(prev, new, pairs):
    """Per 2-bit field: ``10`` (untrusted) keeps ``prev``'s field.  With no
    previous value (NA) the previous state counts as 00 (normal)."""
    if prev < 0:
        prev = 0
    out = new
    for k in range(pairs):
        s = k + k
        if ((new >> s) & 3) == 2:
            m = 3 << s
            out = (out & ~m) | (prev & m)
    return out


def _state(prev, raw, low_ok):
    """BSM 2-bit state: 00/01 stored; 10 stored only where it means "too
    low" (``low_ok``), otherwise untrusted -> previous; 11 -> previous."""
    if raw == 0 or raw == 1 or (raw == 2 and low_ok):
        return raw
    return prev


def dec_bhm(data, n, bms):
    """BHM: max permitted total charging voltage (0.1 V).  0xFFFF -> E_RANGE
    (the insulation-test voltage is derived from it)."""
    if _bad_len(data, n, 2):
        return E_LEN
    v = _u16(data, 0)
    if v == 0xFFFF:
        return E_RANGE
    bms.bhm_max_v = v
    return OK


def dec_brm(data, n, bms):
    """BRM (TP): 8..49 bytes.  Version, type, rated Ah and V; VIN if sent."""
    if n > _BRM_MAX or _bad_len(data, n, 8):
        return E_LEN
    bms.brm_len = n
    bms.brm_version = data[0] | (data[1] << 8) | (data[2] << 16)
    bms.batt_type = data[3]          # informational, stored as received
    v = _u16(data, 4)
    bms.rated_ah = NA if v == 0xFFFF else v
    v = _u16(data, 6)
    bms.rated_v = NA if v == 0xFFFF else v
    # VIN: whatever part of bytes 25..41 arrived, trailing fill (FF/00/space)
    # dropped, non-printable bytes shown as '?' so vin_str() cannot fail.
    m = n - _VIN_OFF if n > _VIN_OFF else 0
    if m > _VIN_LEN:
        m = _VIN_LEN
    while m > 0:
        c = data[_VIN_OFF + m - 1]
        if c != 0xFF and c != 0x00 and c != 0x20:
            break
        m -= 1
    vin = bms.vin
    for i in range(_VIN_LEN):
        if i < m:
            c = data[_VIN_OFF + i]
            if c < 0x20 or c > 0x7E:
                c = 0x3F
            vin[i] = c
        else:
            vin[i] = 0
    bms.vin_len = m
    return OK


def dec_bcp(data, n, bms):
    """BCP (TP, 13 bytes).  Limits legal or E_RANGE; SOC/voltage as is."""
    if _bad_len(data, n, 13):
        return E_LEN
    cell = _u16(data, 0)
    i_raw = _u16(data, 2)
    energy = _u16(data, 4)
    vmax = _u16(data, 6)
    t_raw = data[8]
    soc = _u16(data, 9)
    vnow = _u16(data, 11)
    if cell > _CELL_MAX or i_raw > _I_OFFSET or vmax == 0xFFFF or t_raw > _TEMP_MAX_RAW:
        return E_RANGE
    bms.max_cell_v = cell
    bms.max_i = _I_OFFSET - i_raw
    bms.energy = NA if energy == 0xFFFF else energy
    bms.max_v = vmax
    bms.max_temp = t_raw - _T_OFFSET
    bms.bcp_soc = NA if soc == 0xFFFF else soc      # > 1000 kept for S-12
    bms.bcp_v = NA if vnow == 0xFFFF else vnow
    return OK


# bcp_bad_fields bits
BAD_CELL_V = const(1)
BAD_MAX_I = const(2)
BAD_MAX_V = const(4)
_BAD_TEMP = const(8)


def bcp_bad_fields(data, n):
    """Which BCP limits ``dec_bcp`` rejects as out of range (``BAD_*``
    bits; 0 if none or too short): the reason for an ``E_RANGE``."""
    if _bad_len(data, n, 13):
        return 0
    bad = 0
    if _u16(data, 0) > _CELL_MAX:
        bad |= BAD_CELL_V
    if _u16(data, 2) > _I_OFFSET:
        bad |= BAD_MAX_I
    if _u16(data, 6) == 0xFFFF:
        bad |= BAD_MAX_V
    if data[8] > _TEMP_MAX_RAW:
        bad |= _BAD_TEMP
    return bad


def dec_bro(data, n, bms):
    """BRO: 0x00 / 0xAA, anything else (0xFF "invalid" included) E_RANGE."""
    if _bad_len(data, n, 1):
        return E_LEN
    v = data[0]
    if v != 0x00 and v != 0xAA:
        return E_RANGE
    bms.bro = v
    return OK


def dec_bcl(data, n, bms):
    """BCL (5 bytes): demand V, I, mode.  V 0xFFFF, discharge current, mode
    not 1/2 -> E_RANGE.  Demands above the BCP limits pass (S-1, S-4)."""
    # (every 50 ms, and what a flood is made of: _bad_len/_u16 inlined)
    if n < 5 or n > len(data):
        return E_LEN
    v = data[0] | (data[1] << 8)
    i_raw = data[2] | (data[3] << 8)
    mode = data[4]
    if v == 0xFFFF or i_raw > _I_OFFSET or (mode != 1 and mode != 2):
        return E_RANGE
    bms.req_v = v
    bms.req_i = _I_OFFSET - i_raw
    bms.req_mode = mode
    return OK


def dec_bcs(data, n, bms):
    """BCS (TP, 9 bytes).  Measured V/I, highest cell + group, SOC (1 %),
    remaining minutes.  Cell > 24 V -> E_RANGE; a discharge current reads as
    0 charging current; SOC > 100 passes; remaining time clamped to 600."""
    # (every 250 ms: _bad_len/_u16 inlined; one scratch local ``v`` so that
    # the frame stays within the 11 words a call keeps on the C stack)
    if n < 9 or n > len(data):
        return E_LEN
    w = data[4] | (data[5] << 8)
    cell = w & 0xFFF
    if cell != _CELL_NA and cell > _CELL_MAX:
        return E_RANGE
    v = data[0] | (data[1] << 8)
    bms.meas_v = NA if v == 0xFFFF else v
    v = data[2] | (data[3] << 8)             # current, raw
    if v == 0xFFFF:
        bms.meas_i = NA
    elif v > _I_OFFSET:
        bms.meas_i = 0
    else:
        bms.meas_i = _I_OFFSET - v
    if cell == _CELL_NA:
        bms.cell_max_v = NA
        bms.cell_max_group = NA
    else:
        bms.cell_max_v = cell
        bms.cell_max_group = w >> 12
    v = data[6]                              # SOC
    bms.soc = NA if v == 0xFF else v
    v = data[7] | (data[8] << 8)             # remaining minutes
    if v == 0xFFFF:
        bms.remain_min = NA
    else:
        bms.remain_min = _REMAIN_MAX if v > _REMAIN_MAX else v
    return OK


def dec_bsm(data, n, bms):
    """BSM (7 bytes).  Extremes and their numbers, six 2-bit states and the
    charging permission.  Only E_LEN: a BSM is never rejected for its
    values, its fault bits must always get through."""
    if n < 7 or n > len(data):
        return E_LEN
    bms.cell_max_no = data[0] + 1                # 1..256, 0xFF = cell 256
    t = data[1]
    bms.temp_max = NA if t == 0xFF else t - _T_OFFSET
    t = data[2]
    bms.temp_max_no = NA if t >= _BMT_MAX else t + 1
    t = data[3]
    bms.temp_min = NA if t == 0xFF else t - _T_OFFSET
    t = data[4]
    bms.temp_min_no = NA if t >= _BMT_MAX else t + 1
    # _state() inlined (a frequent message): a field is stored when it is
    # 00/01, or 10 where 10 means "too low" (cell voltage, SOC); otherwise
    # it keeps its previous value
    b = data[5]
    x = b & 3
    if x < 3:
        bms.st_cell_v = x
    x = (b >> 2) & 3
    if x < 3:
        bms.st_soc = x
    x = (b >> 4) & 3
    if x < 2:
        bms.st_oc = x
    x = (b >> 6) & 3
    if x < 2:
        bms.st_ot = x
    b = data[6]
    x = b & 3
    if x < 2:
        bms.st_ins = x
    x = (b >> 2) & 3
    if x < 2:
        bms.st_conn = x
    x = (b >> 4) & 3
    if x < 2:
        bms.permit = x
    return OK


def dec_bst(data, n, bms):
    """BST (4 bytes): reason byte, fault 16 bit LE, error byte, stored as on
    the wire with untrusted (10) fields replaced by the previous value."""
    if _bad_len(data, n, 4):
        return E_LEN
    e = bms.end
    e.bst_reason = _merge2(e.bst_reason, data[0], 4)
    e.bst_fault = _merge2(e.bst_fault, _u16(data, 1), 8)
    e.bst_error = _merge2(e.bst_error, data[3], 4)
    return OK


def dec_bsd(data, n, bms):
    """BSD (7 bytes): end SOC (as is), min/max cell (> 24 V -> E_RANGE),
    min/max temperature.  All-ones fields -> NA."""
    if _bad_len(data, n, 7):
        return E_LEN
    lo = _u16(data, 1)
    hi = _u16(data, 3)
    if (lo != 0xFFFF and lo > _CELL_MAX) or (hi != 0xFFFF and hi > _CELL_MAX):
        return E_RANGE
    e = bms.end
    t = data[0]
    e.end_soc = NA if t == 0xFF else t
    e.end_cell_min_v = NA if lo == 0xFFFF else lo
    e.end_cell_max_v = NA if hi == 0xFFFF else hi
    t = data[5]
    e.end_temp_min = NA if t == 0xFF else t - _T_OFFSET
    t = data[6]
    e.end_temp_max = NA if t == 0xFF else t - _T_OFFSET
    return OK


def dec_bem(data, n, bms):
    """BEM (4 bytes): LE 32-bit image, low 30 bits kept (byte 4 bits 7-8 are
    unused fill), untrusted fields keep the previous value."""
    if _bad_len(data, n, 4):
        return E_LEN
    new = data[0] | (data[1] << 8) | (data[2] << 16) | ((data[3] & 0x3F) << 24)
    bms.bem = _merge2(bms.bem, new, 15)
    return OK


# Decoder per PF (PGN >> 8; every BMS -> charger PGN has a zero low byte).
_DEC = [None] * 0x28
_DEC[ids.PGN_BHM >> 8] = dec_bhm
_DEC[ids.PGN_BRM >> 8] = dec_brm
_DEC[ids.PGN_BCP >> 8] = dec_bcp
_DEC[ids.PGN_BRO >> 8] = dec_bro
_DEC[ids.PGN_BCL >> 8] = dec_bcl
_DEC[ids.PGN_BCS >> 8] = dec_bcs
_DEC[ids.PGN_BSM >> 8] = dec_bsm
_DEC[ids.PGN_BMV >> 8] = decdetail.dec_bmv
_DEC[ids.PGN_BMT >> 8] = decdetail.dec_bmt
_DEC[ids.PGN_BSP >> 8] = decdetail.dec_bsp
_DEC[ids.PGN_BST >> 8] = dec_bst
_DEC[ids.PGN_BSD >> 8] = dec_bsd
_DEC[ids.PGN_BEM >> 8] = dec_bem
_DEC = tuple(_DEC)


def decode(pgn, data, n, bms):
    """Dispatch on PGN; ``E_UNKNOWN`` for anything that is not BMS -> charger.

    Runs for every decoded frame: one table lookup by PF instead of a
    chain of comparisons (13 for a BEM)."""
    pf = pgn >> 8
    if pgn & 0xFF or pf >= 0x28 or pf < 0:
        return E_UNKNOWN
    fn = _DEC[pf]
    if fn is None:
        return E_UNKNOWN
    return fn(data, n, bms)
