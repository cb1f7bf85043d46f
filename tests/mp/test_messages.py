"""gbt.messages on the real micropython: bytes on the bus and decoded values.

Encoder vectors are written out by hand from spec section 3 (not produced by
the code under test); decoder vectors likewise.  The fuzz test feeds random
lengths 0..64 (and n beyond the buffer) of random bytes into every decoder."""
import mptest
from gbt import messages as m
from gbt import ids
from gbt.bmsdata import BmsData, NA

BUF = bytearray(8)


def hx(s):
    return bytes.fromhex(s.replace(" ", ""))


def enc(fn, *args, **kw):
    n = fn(BUF, *args, **kw)
    return bytes(BUF[:n])


def fields(bms):
    """Every field of a ``BmsData`` as (name, value), the value objects'
    (``cells``, ``end``) included."""
    for k, v in bms.__dict__.items():
        if hasattr(v, "__dict__"):
            for kk, vv in v.__dict__.items():
                yield kk, vv
        else:
            yield k, v


def snap(bms):
    d = {}
    for k, v in fields(bms):
        d[k] = bytes(v) if isinstance(v, bytearray) else v
    return d


# ---------------------------------------------------------------- encoders

def test_enc_chm():
    mptest.eq(enc(m.enc_chm), hx("01 01 00"), "V1.1")
    mptest.eq(bytes(BUF[3:]), hx("FF FF FF FF FF"), "fill after DLC")


def test_enc_crm():
    mptest.eq(enc(m.enc_crm, False, 0x12345678, b"440"), hx("00 78 56 34 12 34 34 30"))
    mptest.eq(enc(m.enc_crm, True, 1, None), hx("AA 01 00 00 00 FF FF FF"))
    mptest.eq(enc(m.enc_crm, 1, 7, b"4"), hx("AA 07 00 00 00 34 FF FF"), "short region")
    mptest.eq(enc(m.enc_crm, 1, 7, "4401"), hx("AA 07 00 00 00 34 34 30"), "str, cut to 3")


def test_enc_cts_bcd_order():
    mptest.eq(enc(m.enc_cts, 2024, 3, 5, 14, 7, 9), hx("09 07 14 05 03 24 20"))
    mptest.eq(enc(m.enc_cts, 1999, 12, 31, 23, 59, 58), hx("58 59 23 31 12 99 19"))


def test_enc_cml_current_offset():
    # 750 V, 200 V, 200 A (raw 2000 = D0 07, spec example), 0 A (raw 4000)
    mptest.eq(enc(m.enc_cml, 7500, 2000, 2000, 0), hx("4C 1D D0 07 D0 07 A0 0F"))
    # clamps: current above 400 A -> raw 0, negative -> 0 A
    mptest.eq(enc(m.enc_cml, 7500, 2000, 5000, -5), hx("4C 1D D0 07 00 00 A0 0F"))


def test_enc_cro():
    mptest.eq(enc(m.enc_cro, True), hx("AA"))
    mptest.eq(enc(m.enc_cro, 0), hx("00"))


def test_enc_ccs_dlc_profiles():
    # 500.0 V, 100.0 A (raw 3000), 12 min, permitted
    mptest.eq(enc(m.enc_ccs, 5000, 1000, 12, 1), hx("88 13 B8 0B 0C 00 FD FF"))
    mptest.eq(enc(m.enc_ccs, 5000, 1000, 12, 0), hx("88 13 B8 0B 0C 00 FC FF"), "pause")
    mptest.eq(enc(m.enc_ccs, 5000, 1000, 12, 1, dlc=7), hx("88 13 B8 0B 0C 00 FD"), "2023-A")
    mptest.eq(enc(m.enc_ccs, 0, 0, 9999, 1), hx("00 00 A0 0F 58 02 FD FF"), "minutes <= 600")


def test_enc_cst():
    mptest.eq(enc(m.enc_cst, m.CST_R_BMS, 0, 0), hx("40 00 F0 F0"))
    mptest.eq(enc(m.enc_cst, m.CST_R_FAULT, m.CST_F_ESTOP | m.CST_F_OVERTEMP, m.CST_E_VOLTAGE),
              hx("10 01 F1 F4"))
    mptest.eq(enc(m.enc_cst, m.CST_R_MANUAL | m.CST_R_CONDITION, m.CST_F_OTHER, m.CST_E_CURRENT),
              hx("05 00 F4 F1"))
    # 2023-A bits only with profile 1; with 2015 bits 13-16 stay 1
    mptest.eq(enc(m.enc_cst, m.CST_R_FAULT, m.CST_F_SELFCHECK | m.CST_F_PRECHARGE, 0),
              hx("10 00 F0 F0"))
    mptest.eq(enc(m.enc_cst, m.CST_R_FAULT, m.CST_F_SELFCHECK, 0, profile=m.PROFILE_2023A),
              hx("10 00 10 F0"))
    # only value 01 can be set: stray bits dropped
    mptest.eq(enc(m.enc_cst, 0xFF, 0xFFFF, 0xFF), hx("55 55 F5 F5"))


def test_enc_csd():
    mptest.eq(enc(m.enc_csd, 45, 123, 1), hx("2D 00 7B 00 01 00 00 00"))
    mptest.eq(enc(m.enc_csd, 700, 20000, 0x01020304), hx("58 02 10 27 04 03 02 01"), "clamped")


def test_enc_cem():
    mptest.eq(enc(m.enc_cem, 0), hx("FC F0 C0 FC"))
    mptest.eq(enc(m.enc_cem, m.CEM_BRM), hx("FD F0 C0 FC"))
    mptest.eq(enc(m.enc_cem, m.CEM_BCP | m.CEM_BRO), hx("FC F5 C0 FC"))
    mptest.eq(enc(m.enc_cem, m.CEM_BCS | m.CEM_BCL | m.CEM_BST), hx("FC F0 D5 FC"))
    mptest.eq(enc(m.enc_cem, m.CEM_BSD), hx("FC F0 C0 FD"))


# ---------------------------------------------------------------- decoders

VIN = b"LSVAM4187C2184847"
BRM49 = (hx("01 01 00 03 E8 03 4C 1D") + b"CATL" + hx("01 02 03 04 27 05 0F 10 00 00 01 FF")
         + VIN + hx("01 02 03 04 05 06 07 08"))


def test_dec_bhm():
    b = BmsData()
    mptest.eq(m.dec_bhm(hx("4C 1D"), 2, b), m.OK)
    mptest.eq(b.bhm_max_v, 7500)
    mptest.eq(m.dec_bhm(hx("FF FF"), 2, b), m.E_RANGE, "not available")
    mptest.eq(m.dec_bhm(hx("4C"), 1, b), m.E_LEN)
    mptest.eq(b.bhm_max_v, 7500, "kept")


def test_dec_brm_49_and_41_and_8():
    mptest.eq(len(BRM49), 49)
    b = BmsData()
    mptest.eq(m.dec_brm(BRM49, 49, b), m.OK)
    mptest.eq((b.brm_len, b.brm_version, b.batt_type, b.rated_ah, b.rated_v),
              (49, 0x000101, 3, 1000, 7500))
    mptest.eq(b.vin_str(), "LSVAM4187C2184847")
    mptest.eq(m.dec_brm(BRM49, 41, b), m.OK)
    mptest.eq((b.brm_len, b.vin_str()), (41, "LSVAM4187C2184847"))
    mptest.eq(m.dec_brm(BRM49, 8, b), m.OK)
    mptest.eq((b.brm_len, b.vin_len, b.vin_str()), (8, 0, ""), "no VIN in 8 bytes")


def test_dec_brm_length_and_vin_fill():
    b = BmsData()
    mptest.eq(m.dec_brm(BRM49, 7, b), m.E_LEN)
    mptest.eq(m.dec_brm(BRM49 + b"\xff", 50, b), m.E_LEN)
    mptest.eq(b.brm_version, NA, "untouched")
    d = bytearray(BRM49)
    for i in range(24, 41):
        d[i] = 0xFF
    mptest.eq(m.dec_brm(d, 49, b), m.OK)
    mptest.eq(b.vin_len, 0, "VIN all FF = not sent")
    d[24:30] = b"AB\x01\xfeCD"
    mptest.eq(m.dec_brm(d, 49, b), m.OK)
    mptest.eq(b.vin_str(), "AB??CD", "trailing fill cut, non-printable -> ?")
    d = bytearray(BRM49)
    d[4] = d[5] = d[6] = d[7] = 0xFF
    m.dec_brm(d, 30, b)
    mptest.eq((b.rated_ah, b.rated_v, b.vin_str()), (NA, NA, "LSVAM4"), "NA and partial VIN")


BCP = hx("A9 01 DC 05 58 02 4C 1D 69 C8 01 64 19")


def test_dec_bcp():
    b = BmsData()
    mptest.eq(m.dec_bcp(BCP, 13, b), m.OK)
    mptest.eq((b.max_cell_v, b.max_i, b.energy, b.max_v, b.max_temp, b.bcp_soc, b.bcp_v),
              (425, 2500, 600, 7500, 55, 456, 6500))


def test_dec_bcp_ranges():
    b = BmsData()
    m.dec_bcp(BCP, 13, b)
    before = snap(b)
    for off, val, what in ((2, b"\xa1\x0f", "max current 4001 = discharge"),
                           (0, b"\x61\x09", "cell limit 24.01 V"),
                           (0, b"\xff\xff", "cell limit NA"),
                           (6, b"\xff\xff", "max voltage NA"),
                           (8, b"\xfb", "max temperature 201 degC")):
        d = bytearray(BCP)
        d[off:off + len(val)] = val
        mptest.eq(m.dec_bcp(d, 13, b), m.E_RANGE, what)
        mptest.eq(snap(b), before, what + ": untouched")
    mptest.eq(m.dec_bcp(BCP, 12, b), m.E_LEN)
    d = bytearray(BCP)
    d[9:11] = b"\xed\x03"            # SOC 100.5 %: must reach S-12
    d[4:6] = b"\xff\xff"
    d[2:4] = b"\xa0\x0f"             # max current 0 A is legal
    mptest.eq(m.dec_bcp(d, 13, b), m.OK)
    mptest.eq((b.bcp_soc, b.energy, b.max_i), (1005, NA, 0))
    d[8] = 0xFA                      # 200 degC is the top of the range
    mptest.eq(m.dec_bcp(d + b"\xff\xff", 15, b), m.OK, "longer payload accepted")
    mptest.eq(b.max_temp, 200)


def test_dec_bro():
    b = BmsData()
    mptest.eq(m.dec_bro(hx("00"), 1, b), m.OK)
    mptest.eq(b.bro, 0)
    mptest.eq(m.dec_bro(hx("AA FF FF FF FF FF FF FF"), 8, b), m.OK)
    mptest.eq(b.bro, 0xAA)
    mptest.eq(m.dec_bro(hx("FF"), 1, b), m.E_RANGE)
    mptest.eq(m.dec_bro(hx("55"), 1, b), m.E_RANGE)
    mptest.eq(m.dec_bro(b"", 0, b), m.E_LEN)
    mptest.eq(b.bro, 0xAA)


def test_dec_bcl():
    b = BmsData()
    mptest.eq(m.dec_bcl(hx("58 1B C4 09 02"), 5, b), m.OK)
    mptest.eq((b.req_v, b.req_i, b.req_mode), (7000, 1500, 2))
    # demand of 400 A and 6553.4 V pass (S-1 / S-4 judge them, not the codec)
    mptest.eq(m.dec_bcl(hx("FE FF 00 00 01"), 5, b), m.OK)
    mptest.eq((b.req_v, b.req_i, b.req_mode), (65534, 4000, 1))
    for d, what in (("58 1B A1 0F 02", "discharge demand"), ("58 1B FF FF 02", "current NA"),
                    ("FF FF C4 09 02", "voltage NA"), ("58 1B C4 09 03", "mode 3"),
                    ("58 1B C4 09 00", "mode 0")):
        mptest.eq(m.dec_bcl(hx(d), 5, b), m.E_RANGE, what)
    mptest.eq(m.dec_bcl(hx("58 1B C4 09"), 4, b), m.E_LEN)
    mptest.eq((b.req_v, b.req_i, b.req_mode), (65534, 4000, 1), "untouched")


BCS = hx("65 19 C5 09 9C 31 57 1E 00")


def test_dec_bcs():
    b = BmsData()
    mptest.eq(m.dec_bcs(BCS, 9, b), m.OK)
    mptest.eq((b.meas_v, b.meas_i, b.cell_max_v, b.cell_max_group, b.soc, b.remain_min),
              (6501, 1499, 412, 3, 87, 30))


def test_dec_bcs_rules():
    b = BmsData()
    mptest.eq(m.dec_bcs(hx("65 19 C5 09 61 F9 78 BC 02"), 9, b), m.E_RANGE, "cell 24.01 V")
    mptest.eq(b.meas_v, NA, "untouched")
    mptest.eq(m.dec_bcs(hx("65 19 04 10 60 F9 78 BC 02"), 9, b), m.OK)
    mptest.eq((b.meas_i, b.cell_max_v, b.cell_max_group, b.soc, b.remain_min),
              (0, 2400, 15, 120, 600), "discharge->0, 24.00 V ok, SOC 120 as is, 700->600")
    mptest.eq(m.dec_bcs(hx("FF FF FF FF FF FF FF FF FF"), 9, b), m.OK)
    mptest.eq((b.meas_v, b.meas_i, b.cell_max_v, b.cell_max_group, b.soc, b.remain_min),
              (NA, NA, NA, NA, NA, NA), "all not available")
    mptest.eq(m.dec_bcs(BCS, 8, b), m.E_LEN)


def test_dec_bsm_values_and_states():
    b = BmsData()
    # cell 12 highest, 45 degC at probe 3, 20 degC at probe 7, states all normal, permit
    mptest.eq(m.dec_bsm(hx("0B 5F 02 46 06 00 D0"), 7, b), m.OK)
    mptest.eq((b.cell_max_no, b.temp_max, b.temp_max_no, b.temp_min, b.temp_min_no),
              (12, 45, 3, 20, 7))
    mptest.eq((b.st_cell_v, b.st_soc, b.st_oc, b.st_ot, b.st_ins, b.st_conn, b.permit),
              (0, 0, 0, 0, 0, 0, 1))
    # cell too low (10), SOC too high (01), overcurrent 01, over-temp 01; insulation 01,
    # connector 01, pause 00
    mptest.eq(m.dec_bsm(hx("FF FF FF FF FF 56 C5"), 7, b), m.OK)
    mptest.eq((b.cell_max_no, b.temp_max, b.temp_max_no, b.temp_min, b.temp_min_no),
              (256, NA, NA, NA, NA))
    mptest.eq((b.st_cell_v, b.st_soc, b.st_oc, b.st_ot, b.st_ins, b.st_conn, b.permit),
              (2, 1, 1, 1, 1, 1, 0))
    # untrusted 10 in oc/ot/ins/conn/permit and 11 everywhere keeps the previous state
    mptest.eq(m.dec_bsm(hx("00 FA 00 00 00 AF EA"), 7, b), m.OK)
    mptest.eq((b.st_cell_v, b.st_soc, b.st_oc, b.st_ot, b.st_ins, b.st_conn, b.permit),
              (2, 1, 1, 1, 1, 1, 0))
    mptest.eq(b.temp_max, 200)
    mptest.eq(m.dec_bsm(hx("00 FE 80 00 00 00 D0"), 7, b), m.OK)
    mptest.eq((b.temp_max, b.temp_max_no, b.st_oc, b.permit), (204, NA, 0, 1),
              "204 degC passes for S-10; probe 129 -> NA")
    mptest.eq(m.dec_bsm(hx("00 FE 80 00 00 00"), 6, b), m.E_LEN)


def cells(*vs):
    d = bytearray()
    for v in vs:
        d.append(v & 0xFF)
        d.append(v >> 8)
    return d


def test_dec_bmv_extremes_and_groups():
    b = BmsData()
    # groups 1,1,2,2: a naive 16-bit read would see 41 V and more
    d = cells(0x1000 | 330, 0x1000 | 331, 0x2000 | 329, 0x2000 | 335)
    c = b.cells
    mptest.eq(m.dec_bmv(d, 8, b), m.OK)
    mptest.eq((c.bmv_cells, c.cell_min_v, c.cell_min_no, c.bmv_max_v), (4, 329, 3, 335))
    # not-available cells are skipped; first lowest wins
    d = cells(0xFFFF, 320, 0x3FFF, 320, 2400)
    mptest.eq(m.dec_bmv(d, 10, b), m.OK)
    mptest.eq((c.bmv_cells, c.cell_min_v, c.cell_min_no, c.bmv_max_v), (3, 320, 2, 2400))
    mptest.eq(m.dec_bmv(cells(0xFFFF), 2, b), m.OK)
    mptest.eq((c.bmv_cells, c.cell_min_v, c.cell_min_no, c.bmv_max_v), (0, NA, NA, NA))


def test_dec_bmv_256_cells_and_rejects():
    b = BmsData()
    d = bytearray(512)
    for k in range(256):
        v = 340 + (k * 7) % 13
        if k == 200:
            v = 301
        if k == 17:
            v = 399
        d[2 * k] = v & 0xFF
        d[2 * k + 1] = (v >> 8) | ((k // 16) << 4)
    mptest.eq(m.dec_bmv(d, 512, b), m.OK)
    c = b.cells
    mptest.eq((c.bmv_cells, c.cell_min_v, c.cell_min_no, c.bmv_max_v), (256, 301, 201, 399))
    before = snap(b)
    d[100] = 0x61
    d[101] = 0x09                      # cell 51 = 24.01 V
    mptest.eq(m.dec_bmv(d, 512, b), m.E_RANGE)
    mptest.eq(snap(b), before, "untouched")
    mptest.eq(m.dec_bmv(d, 513, b), m.E_LEN, "n beyond 512")
    mptest.eq(m.dec_bmv(bytearray(10), 12, b), m.E_LEN, "n beyond buffer")
    mptest.eq(m.dec_bmv(bytearray(514), 514, b), m.E_LEN, "257 cells")
    mptest.eq(m.dec_bmv(d, 7, b), m.E_LEN, "odd")
    mptest.eq(m.dec_bmv(d, 0, b), m.E_LEN, "empty")
    mptest.eq(snap(b), before, "untouched")


def test_dec_bmt():
    b = BmsData()
    c = b.cells
    mptest.eq(m.dec_bmt(hx("46 FF 41 50 3C"), 5, b), m.OK)
    mptest.eq((c.bmt_probes, c.bmt_min, c.bmt_max), (4, 10, 30))
    mptest.eq(m.dec_bmt(hx("00 FE"), 2, b), m.OK)
    mptest.eq((c.bmt_probes, c.bmt_min, c.bmt_max), (2, -50, 204))
    mptest.eq(m.dec_bmt(hx("FF FF"), 2, b), m.OK)
    mptest.eq((c.bmt_probes, c.bmt_min, c.bmt_max), (0, NA, NA))
    mptest.eq(m.dec_bmt(bytearray(129), 129, b), m.E_LEN)
    mptest.eq(m.dec_bmt(bytearray(128), 128, b), m.OK)
    mptest.eq((c.bmt_probes, c.bmt_min), (128, -50))


def test_dec_bsp():
    b = BmsData()
    mptest.eq(m.dec_bsp(bytearray(16), 16, b), m.OK)
    mptest.eq(m.dec_bsp(bytearray(17), 17, b), m.E_LEN)
    mptest.eq(m.dec_bsp(bytearray(1), 0, b), m.E_LEN)


def test_dec_bst_untrusted_keeps_previous():
    b = BmsData()
    e = b.end
    # SOC target reached; insulation fault; no error; fill bits 5-8 of byte 4
    mptest.eq(m.dec_bst(hx("01 01 00 F0"), 4, b), m.OK)
    mptest.eq((e.bst_reason, e.bst_fault, e.bst_error), (0x01, 0x0001, 0xF0))
    # reason field 1 untrusted (10) + field 4 set; fault field 1 untrusted,
    # field 8 set; error field 1 untrusted
    mptest.eq(m.dec_bst(hx("42 02 40 F2"), 4, b), m.OK)
    mptest.eq((e.bst_reason, e.bst_fault, e.bst_error), (0x41, 0x4001, 0xF0))
    b2 = BmsData()
    mptest.eq(m.dec_bst(hx("02 00 00 F0"), 4, b2), m.OK)
    mptest.eq(b2.end.bst_reason, 0, "untrusted with no previous = normal")
    mptest.eq(m.dec_bst(hx("02 00 00"), 3, b2), m.E_LEN)


def test_dec_bsd():
    b = BmsData()
    e = b.end
    mptest.eq(m.dec_bsd(hx("5F 48 01 9E 01 37 3C"), 7, b), m.OK)
    mptest.eq((e.end_soc, e.end_cell_min_v, e.end_cell_max_v, e.end_temp_min, e.end_temp_max),
              (95, 328, 414, 5, 10))
    mptest.eq(m.dec_bsd(hx("FF FF FF FF FF FF FF"), 7, b), m.OK)
    mptest.eq((e.end_soc, e.end_cell_min_v, e.end_cell_max_v, e.end_temp_min, e.end_temp_max),
              (NA, NA, NA, NA, NA))
    mptest.eq(m.dec_bsd(hx("65 48 01 61 09 37 3C"), 7, b), m.E_RANGE, "max cell 24.01 V")
    mptest.eq(m.dec_bsd(hx("65 48 01 9E 01 37 3C"), 7, b), m.OK)
    mptest.eq(e.end_soc, 101, "SOC > 100 passes")
    mptest.eq(m.dec_bsd(hx("65 48 01 9E 01 37"), 6, b), m.E_LEN)


def test_dec_bem():
    b = BmsData()
    mptest.eq(m.dec_bem(hx("FD F0 F0 FC"), 4, b), m.OK)
    mptest.eq(b.bem & 0x03030303, 0x00000001, "CRM 00 timeout")
    mptest.eq(b.bem < (1 << 30), True, "small int")
    mptest.eq(m.dec_bem(hx("FE F4 F1 FD"), 4, b), m.OK)   # CRM untrusted -> kept
    # byte 1: FE = field 1 untrusted -> keeps 01, field 2 = 11; then 00/01, 01, 01
    mptest.eq(b.bem & 0x0303030F, 0x0101000D)
    mptest.eq(m.dec_bem(hx("FE F4 F1"), 3, b), m.E_LEN)


def test_decode_dispatch():
    b = BmsData()
    mptest.eq(m.decode(ids.PGN_BCL, hx("58 1B C4 09 02"), 5, b), m.OK)
    mptest.eq(b.req_i, 1500)
    mptest.eq(m.decode(ids.PGN_BRM, BRM49, 49, b), m.OK)
    mptest.eq(b.vin_str(), "LSVAM4187C2184847")
    for pgn in (ids.PGN_CHM, ids.PGN_CCS, ids.PGN_CEM, ids.PGN_TPCM, 0x2000, 0xFECA, 0):
        mptest.eq(m.decode(pgn, BUF, 8, b), m.E_UNKNOWN, hex(pgn))
    for pgn in (ids.PGN_BHM, ids.PGN_BRM, ids.PGN_BCP, ids.PGN_BRO, ids.PGN_BCL, ids.PGN_BCS,
                ids.PGN_BSM, ids.PGN_BMV, ids.PGN_BMT, ids.PGN_BSP, ids.PGN_BST, ids.PGN_BSD,
                ids.PGN_BEM):
        mptest.eq(m.decode(pgn, BUF, 0, b), m.E_LEN, hex(pgn))


# ---------------------------------------------------------------- fuzz

DECODERS = (m.dec_bhm, m.dec_brm, m.dec_bcp, m.dec_bro, m.dec_bcl, m.dec_bcs, m.dec_bsm,
            m.dec_bmv, m.dec_bmt, m.dec_bsp, m.dec_bst, m.dec_bsd, m.dec_bem)
SMALL = 1 << 30


class Rng:
    """xorshift32: deterministic on every port."""

    def __init__(self, seed):
        self.s = seed

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x


def fill(rng, buf, n):
    # mix of uniform bytes and the interesting ones (fill, 0, 0xAA, limits)
    for i in range(n):
        r = rng.next()
        k = r & 7
        if k == 0:
            buf[i] = 0xFF
        elif k == 1:
            buf[i] = 0
        elif k == 2:
            buf[i] = (0xAA, 0x01, 0x02, 0x0F, 0x60, 0x09, 0xA0, 0xFA)[(r >> 8) & 7]
        else:
            buf[i] = (r >> 8) & 0xFF


def check_bms(b, what):
    for k, v in fields(b):
        if isinstance(v, int):
            mptest.true(-SMALL <= v < SMALL, "%s: %s=%d not a 31-bit small int" % (what, k, v))
    # invariants a user of BmsData relies on after any accepted input
    mptest.true(b.req_i == NA or 0 <= b.req_i <= 4000, what + " req_i")
    mptest.true(b.req_mode in (NA, 1, 2), what + " req_mode")
    mptest.true(b.max_i == NA or 0 <= b.max_i <= 4000, what + " max_i")
    f_all = dict(fields(b))
    for f in ("cell_max_v", "cell_min_v", "bmv_max_v", "max_cell_v", "end_cell_min_v",
              "end_cell_max_v"):
        v = f_all[f]
        mptest.true(v == NA or 0 <= v <= 2400, what + " " + f)
    mptest.true(b.bro in (NA, 0, 0xAA), what + " bro")
    mptest.true(b.permit in (0, 1), what + " permit")
    mptest.true(0 <= b.vin_len <= 17, what + " vin_len")
    b.vin_str()


def test_fuzz_every_decoder():
    rng = Rng(0x2793)
    buf = bytearray(64)
    mv = memoryview(buf)
    counts = [0, 0, 0, 0]
    cases = 0
    for di in range(len(DECODERS)):
        dec = DECODERS[di]
        b = BmsData()
        for c in range(500):
            n = rng.next() % 65
            fill(rng, buf, n)
            if c % 50 == 49:
                n = 65 + c % 7            # claimed length beyond the buffer
            before = snap(b)
            st = dec(mv if c & 1 else buf, n, b)
            cases += 1
            mptest.true(st in (m.OK, m.E_LEN, m.E_RANGE), "status %r" % st)
            counts[st] += 1
            if st != m.OK:
                mptest.eq(snap(b), before, "rejected message changed bms (%d)" % di)
            check_bms(b, "decoder %d case %d" % (di, c))
    mptest.eq(cases, 6500)
    # the fuzz reached every outcome, not just length errors
    mptest.true(counts[m.OK] > 1000 and counts[m.E_LEN] > 1000 and counts[m.E_RANGE] > 100,
                repr(counts))


mptest.main(globals())
