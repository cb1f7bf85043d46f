"""Decoders of the BMS battery detail messages (GB/T 27930 BMV, BMT, BSP):
the long, optional TP messages with one field per cell or probe.

Same contract as ``gbt.dec`` (``dec_xxx(data, n, bms) -> status``,
allocation-free, never raises, validated before the first write); the
scans run in machine code (viper) since a 256-cell BMV is the largest
decode of a session.
"""
import micropython
from array import array
from micropython import const

from gbt import bmsdata as B    # (one global, not nine: RAM on the target)

_BMV_MAX = const(512)
_BSP_MAX = const(16)


@micropython.viper
def _cells(data, n: int, out) -> int:
    """BMV scan in machine code (in bytecode a cell costs ~1,200 target
    instructions: 96 cells ~115,000, 256 cells ~300,000 in one CAN pass;
    docs/performance.md).  ``out`` = [count, lowest, its byte offset,
    highest]; returns 1, or 0 if a cell is > 24 V (E_RANGE)."""
    d = ptr8(data)
    r = ptr32(out)
    cmax = int(B.CELL_MAX)
    cna = int(B.CELL_NA)
    lo = 0x7FFF
    lo_at = 0
    hi = -1
    cnt = 0
    o = 0
    while o < n:
        v = d[o] | ((d[o + 1] & 0x0F) << 8)
        o += 2
        if v > cmax:
            if v == cna:
                continue
            return 0
        cnt += 1
        if v < lo:
            lo = v
            lo_at = o - 2
        if v > hi:
            hi = v
    r[0] = cnt
    r[1] = lo
    r[2] = lo_at
    r[3] = hi
    return 1


@micropython.viper
def _probes(data, n: int, out) -> int:
    """BMT scan in machine code: ``out`` = [count, lowest, highest] raw."""
    d = ptr8(data)
    r = ptr32(out)
    lo = 0x7FFF
    hi = -0x7FFF
    cnt = 0
    k = 0
    while k < n:
        t = d[k]
        k += 1
        if t == 0xFF:
            continue
        cnt += 1
        if t < lo:
            lo = t
        if t > hi:
            hi = t
    r[0] = cnt
    r[1] = lo
    r[2] = hi
    return 1


_SCAN = array("i", [0, 0, 0, 0])     # the scans' results (no allocation)


def dec_bmv(data, n, bms):
    """BMV (2..512 bytes, 2 per cell).  Bits 13-16 (group) are masked off
    before the voltage is used; the cell number is the position in the
    message (1-based).  0xFFF = cell not available (skipped); any cell
    > 24 V -> E_RANGE.  Fills ``bms.cells``: bmv_cells (valid cells),
    cell_min_v, cell_min_no (first lowest), bmv_max_v."""
    if n > _BMV_MAX or (n & 1) or B.bad_len(data, n, 2):
        return B.E_LEN
    r = _SCAN
    if not _cells(data, n, r):
        return B.E_RANGE
    cnt = r[0]
    c = bms.cells
    c.bmv_cells = cnt
    if cnt:
        c.cell_min_v = r[1]
        c.cell_min_no = (r[2] >> 1) + 1
        c.bmv_max_v = r[3]
    else:
        c.cell_min_v = B.NA
        c.cell_min_no = B.NA
        c.bmv_max_v = B.NA
    return B.OK


def dec_bmt(data, n, bms):
    """BMT (1..128 bytes, 1 per probe, -50 degC).  0xFF = probe not
    available (skipped).  Fills ``bms.cells``: bmt_probes (valid), bmt_min,
    bmt_max."""
    if n > B.BMT_MAX or B.bad_len(data, n, 1):
        return B.E_LEN
    r = _SCAN
    _probes(data, n, r)
    cnt = r[0]
    c = bms.cells
    c.bmt_probes = cnt
    if cnt:
        c.bmt_min = r[1] - B.T_OFFSET
        c.bmt_max = r[2] - B.T_OFFSET
    else:
        c.bmt_min = B.NA
        c.bmt_max = B.NA
    return B.OK


def dec_bsp(data, n, bms):
    """BSP (1..16 reserved bytes): length checked, content not stored."""
    if n > _BSP_MAX or B.bad_len(data, n, 1):
        return B.E_LEN
    return B.OK
