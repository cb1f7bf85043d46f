"""Every encoder and decoder of gbt.messages runs with the heap locked.

``micropython.heap_lock()`` makes any allocation raise MemoryError, so a
pass proves the codec hot path allocates nothing (valid input, every
error path, and a fuzz of random input)."""
import micropython

import mptest
from gbt import messages as m
from gbt import ids
from gbt.bmsdata import BmsData

VIN = b"LSVAM4187C2184847"
BRM = (bytes.fromhex("01010003E8034C1D") + b"CATL" + bytes(12) + VIN + bytes(8))
REGION = b"440"


def frames():
    """(pgn, data) pairs: valid, out-of-range and short versions."""
    bmv = bytearray(512)
    for k in range(256):
        bmv[2 * k] = 0x50 + (k & 7)
        bmv[2 * k + 1] = 0x01 | ((k >> 4) << 4)
    bmt = bytearray(128)
    for k in range(128):
        bmt[k] = 60 + (k % 9)
    bad_bmv = bytearray(bmv)
    bad_bmv[300] = 0xFF
    bad_bmv[301] = 0x0A
    h = bytes.fromhex
    return (
        (ids.PGN_BHM, bytearray(h("4C1D"))),
        (ids.PGN_BHM, bytearray(h("FFFF"))),
        (ids.PGN_BRM, bytearray(BRM)),
        (ids.PGN_BCP, bytearray(h("A901DC0558024C1D69C8016419"))),
        (ids.PGN_BCP, bytearray(h("A901A10F58024C1D69C8016419"))),
        (ids.PGN_BRO, bytearray(h("AA"))),
        (ids.PGN_BRO, bytearray(h("FF"))),
        (ids.PGN_BCL, bytearray(h("581BC40902"))),
        (ids.PGN_BCL, bytearray(h("581BC40905"))),
        (ids.PGN_BCS, bytearray(h("6519C5099C31571E00"))),
        (ids.PGN_BCS, bytearray(h("6519FFFF61F9571E00"))),
        (ids.PGN_BSM, bytearray(h("0B5F02460600D0"))),
        (ids.PGN_BSM, bytearray(h("FFFFFFFFFFAAEA"))),
        (ids.PGN_BMV, bmv),
        (ids.PGN_BMV, bad_bmv),
        (ids.PGN_BMT, bmt),
        (ids.PGN_BSP, bytearray(16)),
        (ids.PGN_BST, bytearray(h("4202 40F2"))),
        (ids.PGN_BSD, bytearray(h("5F48019E01373C"))),
        (ids.PGN_BSD, bytearray(h("5F4801FFFF373C"))),
        (ids.PGN_BEM, bytearray(h("FEF4F1FD"))),
        (ids.PGN_CCS, bytearray(8)),
    )


def test_decoders_heap_locked():
    b = BmsData()
    fr = frames()
    st = bytearray(len(fr) * 3)
    mvs = [memoryview(d) for _, d in fr]
    micropython.heap_lock()
    try:
        for rep in range(3):
            i = 0
            for pgn, d in fr:
                st[i * 3] = m.decode(pgn, d, len(d), b)          # full length
                st[i * 3 + 1] = m.decode(pgn, mvs[i], len(d) - 1, b)  # short / odd
                st[i * 3 + 2] = m.decode(pgn, d, len(d) + 1, b)  # beyond buffer
                i += 1
            m.dec_bhm(fr[0][1], 2, b)
            m.dec_brm(fr[2][1], 49, b)
            m.dec_bcp(fr[3][1], 13, b)
            m.dec_bro(fr[5][1], 1, b)
            m.dec_bcl(fr[7][1], 5, b)
            m.dec_bcs(fr[9][1], 9, b)
            m.dec_bsm(fr[11][1], 7, b)
            m.dec_bmv(fr[13][1], 512, b)
            m.dec_bmt(fr[15][1], 128, b)
            m.dec_bsp(fr[16][1], 16, b)
            m.dec_bst(fr[17][1], 4, b)
            m.dec_bsd(fr[18][1], 7, b)
            m.dec_bem(fr[20][1], 4, b)
    finally:
        micropython.heap_unlock()
    # the calls did real work: valid frames OK, bad ones rejected
    mptest.eq([st[i] for i in range(0, len(st), 3)], [0, 2, 0, 0, 2, 0, 2, 0, 2, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 3])
    mptest.eq(st[2], m.E_LEN)
    mptest.eq(b.vin_str(), "LSVAM4187C2184847")
    c = b.cells
    mptest.eq((c.bmv_cells, c.cell_min_v, c.bmv_max_v, c.bmt_min, c.bmt_max),
              (256, 0x150, 0x157, 10, 18))


def test_encoders_heap_locked():
    buf = bytearray(8)
    out = bytearray(16)
    micropython.heap_lock()
    try:
        for rep in range(3):
            out[0] = m.enc_chm(buf)
            out[1] = m.enc_chm(buf, 0x000101)
            out[2] = m.enc_crm(buf, True, 123456, REGION)
            out[3] = m.enc_crm(buf, False, 123456, None)
            out[4] = m.enc_cts(buf, 2024, 3, 5, 14, 7, 9)
            out[5] = m.enc_cml(buf, 7500, 2000, 2000, 0)
            out[6] = m.enc_cro(buf, True)
            out[7] = m.enc_ccs(buf, 5000, 1000, 12, 1)
            out[8] = m.enc_ccs(buf, 5000, 1000, 12, 0, dlc=7)
            out[9] = m.enc_cst(buf, m.CST_R_FAULT, m.CST_F_ESTOP, m.CST_E_VOLTAGE)
            out[10] = m.enc_cst(buf, m.CST_R_FAULT, m.CST_F_PRECHARGE, 0, m.PROFILE_2023A)
            out[11] = m.enc_csd(buf, 45, 123, 1)
            out[12] = m.enc_cem(buf, m.CEM_BCL | m.CEM_BSD)
    finally:
        micropython.heap_unlock()
    mptest.eq(list(out[:13]), [3, 3, 8, 8, 7, 8, 1, 8, 7, 4, 4, 8, 4])
    mptest.eq(bytes(buf[:4]), bytes.fromhex("FCF0C4FD"))


def test_fuzz_heap_locked():
    """4000 random inputs through decode() with the heap locked."""
    b = BmsData()
    buf = bytearray(64)
    pgns = bytearray(14)
    pg = (ids.PGN_BHM, ids.PGN_BRM, ids.PGN_BCP, ids.PGN_BRO, ids.PGN_BCL, ids.PGN_BCS,
          ids.PGN_BSM, ids.PGN_BMV, ids.PGN_BMT, ids.PGN_BSP, ids.PGN_BST, ids.PGN_BSD,
          ids.PGN_BEM, ids.PGN_CHM)
    for i in range(14):
        pgns[i] = pg[i] >> 8
    counts = bytearray(4)
    ok = 0
    # Two 15-bit LCGs (full period 2**15: multiplier = 1 mod 4, odd
    # increment), high bits used.  Every intermediate stays below 2**30
    # (32767 * 25173 + 13849 < 2**30), i.e. a small int on a 32-bit port
    # too: the PRNG itself must not allocate under the heap lock.
    x = 0x1234
    micropython.heap_lock()
    try:
        for c in range(4000):
            x = (x * 9301 + 4929) & 0x7FFF         # per input: length and seed
            n = (x >> 4) % 66                      # 0..65 (64, 65: n > buffer)
            y = x
            for i in range(n if n < 64 else 64):
                y = (y * 25173 + 13849) & 0x7FFF   # per byte
                buf[i] = y >> 7
            st = m.decode(pgns[c % 14] << 8, buf, n, b)
            if st == 0:
                ok += 1
            counts[st] = 1
    finally:
        micropython.heap_unlock()
    mptest.eq(list(counts), [1, 1, 1, 1])
    mptest.true(ok > 300, "ok=%d" % ok)


mptest.main(globals())
