"""Charger session, normal flow: bytes and periods of every charger message,
contactor / aux / lock order, control limits, BSM pause, normal end paths.
Simulated time (10 ms session tick), scripted BMS in bmsscript.py."""
import mptest
from mptest import eq, true
from bmsscript import (Bench, gaps, at, first_change, L_STAGE, L_K12, L_K34,
                       L_LOCK, L_BLEED, L_PWR, L_VSET, L_ISET, L_VIN, L_VOUT, L_I)
from gbt import ids
from gbt import stages as W


def _u16(d, o):
    return d[o] | (d[o + 1] << 8)


def _charge_then_bst(b, charge_ms=15000):
    b.wait_stage("charging", 10000)
    b.run(charge_ms)
    b.ev.stop()
    b.wait_stage("done", 30000)


def test_normal_session_start_sequence():
    b = Bench()
    _charge_then_bst(b)
    log = b.log
    t_lock = first_change(log, L_LOCK, 1)
    t_aux = first_change(log, L_K34, 1)
    true(t_lock < t_aux, "locked before aux power")
    # CHM 01 01 00 every 250 ms from aux on until CRM starts
    chm = b.sent("CHM")
    eq(chm[0][0], t_aux, "first CHM with aux on")
    true(all(d == b"\x01\x01\x00" for t, d in chm), "CHM bytes")
    true(all(g == 250 for g in gaps(chm)), "CHM period %r" % gaps(chm))
    crm = b.sent("CRM")
    true(chm[-1][0] < crm[0][0], "CHM stops when CRM starts")
    # insulation test: K1/K2 closed at min(BHM 500 V, rating 750 V), vehicle side open
    ins = [r for r in log if r[L_STAGE] == W.INSULATION and r[L_K12]]
    true(ins, "K1/K2 closed during the insulation test")
    true(all(r[L_VSET] in (5000, 0) for r in ins), "test voltage 500 V")
    eq(b.session.ins_test_v, 5000, "insulation test voltage")
    eq(b.session.ins_ohm_v, 4000, "2 MOhm at 500 V")
    eq(b.session.ins_warn, 0, "no warning")
    # bled below 60 V and K1/K2 open before the first CRM
    r = at(log, crm[0][0])
    eq(r[L_K12], 0, "K1/K2 open at CRM")
    true(r[L_VOUT] < 600 and r[L_VIN] < 600, "bled below 60 V")
    t_bleed = first_change(log, L_BLEED, 1)
    true(crm[0][0] - t_bleed <= 1000, "bleed within 1 s")
    # CRM 00 then AA, 250 ms grid, charger no 1, region "440"
    true(all(g == 250 for g in gaps(crm)), "CRM period")
    seq = [d[0] for t, d in crm]
    k = seq.index(0xAA)
    true(k >= 1 and all(v == 0 for v in seq[:k]) and all(v == 0xAA for v in seq[k:]), "CRM 00 -> AA")
    eq(crm[0][1], b"\x00\x01\x00\x00\x00440", "CRM 0x00 bytes")
    eq(crm[k][1], b"\xaa\x01\x00\x00\x00440", "CRM 0xAA bytes")
    # CML / CTS after BCP
    cml = b.sent("CML")
    true(cml[0][0] > crm[-1][0], "CML after CRM")
    eq(cml[0][1], b"\x4c\x1d\xd0\x07\xd0\x07\xa0\x0f", "CML 750 V / 200 V / 200 A / 0 A")
    true(all(g == 250 for g in gaps(cml)), "CML period")
    cts = b.sent("CTS")
    eq(cts[0][1], b"\x30\x45\x13\x17\x05\x24\x20", "CTS BCD")
    true(all(g == 500 for g in gaps(cts)), "CTS period")
    # CRO 00 until pre-charge is done, K1/K2 closed 1..10 V below the battery, then AA
    cro = b.sent("CRO")
    true(all(g == 250 for g in gaps(cro)), "CRO period")
    vals = [d[0] for t, d in cro]
    k = vals.index(0xAA)
    true(k >= 1 and all(v == 0 for v in vals[:k]), "CRO 00 first")
    true(all(len(d) == 1 for t, d in cro), "CRO DLC 1")
    t_close = first_change(log, L_K12, 1, crm[-1][0])
    for t, d in cro[:k]:
        eq(at(log, t)[L_K12], 0, "CRO 00 while K1/K2 open")
    true(t_close <= cro[k][0], "K1/K2 closed before CRO 0xAA")
    r = at(log, t_close)     # inputs of a row are measured before that tick
    true(r[L_VOUT] - 100 <= r[L_VIN] <= r[L_VOUT] - 10,
         "pre-charged 1..10 V below battery: %r" % (r,))
    eq(r[L_VOUT], 3500, "battery voltage")


def test_normal_session_charging_and_end():
    b = Bench()
    _charge_then_bst(b)
    s = b.session
    log = b.log
    ccs = b.sent("CCS")
    true(len(ccs) > 250, "CCS sent")
    true(all(g == 50 for g in gaps(ccs)), "CCS every 50 ms")
    for t, d in ccs[::37]:
        r = at(log, t)
        eq(len(d), 8, "CCS DLC 8 (2015)")
        eq(_u16(d, 0), r[L_VOUT], "CCS voltage = measured")
        eq(4000 - _u16(d, 2), r[L_I], "CCS current = measured")
        eq(d[6], 0xFD, "permit 01")
        eq(d[7], 0xFF, "fill")
    # follows BCL: 410 V, 100 A, ramp 20 A/s
    t_ccs0 = ccs[0][0]
    isets = [r[L_ISET] for r in log if r[0] >= t_ccs0 and r[L_STAGE] == W.CHARGING]
    true(max(isets) == 1000, "reached the 100 A demand")
    true(all(isets[k + 1] - isets[k] <= 2 for k in range(len(isets) - 1)), "ramp <= 20 A/s")
    r = [r for r in log if r[L_STAGE] == W.CHARGING][-1]
    eq(r[L_VSET], 4100, "voltage demand")
    # BST -> CST reason 'BMS stopped' at 10 ms, the same tick
    t_bst = [t for (t, c) in b.rx if c == ids.ID_BST][0]
    cst = b.sent("CST")
    eq(cst[0][0], t_bst, "CST answers BST at once")
    true(all(d == b"\x40\x00\xf0\xf0" for t, d in cst), "CST bytes")
    true(all(g == 10 for g in gaps(cst)), "CST every 10 ms")
    # current below 5 A before K1/K2 open, down at >= 100 A/s
    t_open = first_change(log, L_K12, 0, t_bst)
    # CCS goes on while the current falls, the last one right after K1/K2 open
    late = b.sent("CCS", t_bst + 10)
    true(late and all(t <= t_open + 50 for t, d in late), "CCS until K1/K2 open")
    true(4000 - _u16(late[-1][1], 2) <= 50, "last CCS shows <= 5 A")
    true(at(log, t_open)[L_I] <= 50, "I <= 5 A when K1/K2 open")
    true(t_open - t_bst <= 100, "current down within 100 ms")
    true(first_change(log, L_BLEED, 1, t_bst) == t_open, "bleed at open")
    # statistics: CSD after BST + K1/K2 open; aux off after CSD sent and BSD received
    csd = b.sent("CSD")
    true(csd[0][0] >= t_open, "CSD after K1/K2 open")
    true(all(g == 250 for g in gaps(csd)), "CSD period")
    true(not b.sent("CST", csd[0][0]), "CST stops when CSD starts")
    d = csd[-1][1]
    eq(_u16(d, 0), s.charge_min, "CSD minutes")
    eq(_u16(d, 2), s.energy_wh // 100, "CSD energy 0.1 kWh")
    eq(d[4:], b"\x01\x00\x00\x00", "charger number")
    t_aux = first_change(log, L_K34, 0, t_bst)
    t_bsd = [t for (t, c) in b.rx if c == ids.ID_BSD][0]
    true(t_aux > csd[0][0] and t_aux > t_bsd, "aux off after CSD sent and BSD received")
    t_unlock = first_change(log, L_LOCK, 0, t_bst)
    true(t_unlock >= t_aux and at(log, t_unlock)[L_VOUT] < 600, "unlock when < 60 V")
    # energy: integral of measured V*I within 1 %
    e = 0
    for r in log:
        if r[L_STAGE] in (W.CHARGING, W.STOPPING):
            e += (r[L_VOUT] * r[L_I] // 100) * 10
    e_wh = e // 3600000
    true(abs(s.energy_wh - e_wh) <= 1 + e_wh // 100, "energy %d vs %d Wh" % (s.energy_wh, e_wh))
    true(s.energy_wh > 50, "some energy")
    eq(s.stop_why, W.WHY_BMS, "stop_why")
    eq(s.cem, 0, "no CEM")
    eq(s.rehandshakes, 0, "no re-handshake")
    eq(len(b.sent("CEM")), 0, "no CEM frames")
    # next session needs a re-plug (or operator start)
    b.run(3000)
    eq(b.stage(), "done", "stays done while plugged")
    b.plant.cc1 = 12000
    b.run(1100)
    eq(b.stage(), "idle", "unplugged")


def _rx_t(b, cid, t0=0):
    ts = [t for (t, c) in b.rx if c == cid and t >= t0]
    return ts[0] if ts else None


def test_issue10_item10_cst_until_bsd_with_k12_open():
    # BST in the parameter stage (K1/K2 never closed): the charger answers
    # CST every 10 ms until BSD arrives (EN+, GB/T 34658 DN4002), then CSD.
    b = Bench()
    b.ev.mute.add("BSD")                     # the BMS is slow with its BSD
    b.wait_stage("parameter", 10000)
    b.run(100)
    b.ev.stop()
    b.run(1000)
    b.ev.mute.discard("BSD")
    b.wait_stage("done", 10000)
    t_bst = _rx_t(b, ids.ID_BST)
    t_bsd = _rx_t(b, ids.ID_BSD)
    true(t_bsd - t_bst >= 1000, "BSD 1 s after the BST")
    cst = b.sent("CST")
    csd = b.sent("CSD")
    eq(cst[0], (t_bst, b"\x40\x00\xf0\xf0"), "CST answers the BST at once")
    true(all(g == 10 for g in gaps(cst)), "CST every 10 ms")
    eq(cst[-1][0], t_bsd - 10, "CST until the BSD (%d frames)" % len(cst))
    eq(len(cst), (t_bsd - t_bst) // 10, "no gap in between")
    t_par = next(r[0] for r in b.log if r[L_STAGE] == W.PARAMETER)
    true(all(r[L_K12] == 0 for r in b.log if r[0] >= t_par), "K1/K2 open throughout")
    true(csd and csd[0][0] > cst[-1][0] and csd[0][0] - t_bsd <= 20, "then CSD")
    true(all(g == 250 for g in gaps(csd)), "CSD period")
    t_aux = first_change(b.log, L_K34, 0, t_bst)
    true(t_aux > csd[0][0] and t_aux > t_bsd, "aux off after CSD and BSD")
    eq(b.session.stop_why, W.WHY_BMS, "stop_why")
    eq(len(b.sent("CEM")), 0, "no CEM")


def test_profile_2023_ccs_7_bytes():
    b = Bench({"session.profile": 1})
    b.wait_stage("charging", 10000)
    b.run(1000)
    ccs = b.sent("CCS")
    true(ccs and all(len(d) == 7 for t, d in ccs), "CCS DLC 7 in 2023-A profile")


def test_operator_stop():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(10000)
    t0 = b.now
    b.session.operator_stop()
    b.wait_stage("done", 30000)
    cst = b.sent("CST")
    eq(cst[0][0], t0 + 10, "CST at the next tick")
    eq(cst[0][1], b"\x04\x00\xf0\xf0", "CST manual stop")
    t_open = first_change(b.log, L_K12, 0, t0)
    true(at(b.log, t_open)[L_I] <= 50, "I <= 5 A at open")
    true(t_open - t0 <= 110, "current down fast")
    eq(b.session.stop_why, W.WHY_OPERATOR, "why")
    true(b.sent("CSD"), "statistics exchanged")


def test_target_reached():
    b = Bench({"session.target_wh": 50})
    b.wait_stage("charging", 10000)
    b.wait_stage("stopping", 60000)
    s = b.session
    eq(s.stop_why, W.WHY_TARGET, "why")
    true(s.energy_wh >= 50, "energy reached")
    eq(b.sent("CST")[0][1], b"\x01\x00\xf0\xf0", "CST condition reached")
    b.wait_stage("done", 20000)


def test_target_soc():
    b = Bench({"session.target_soc": 80})
    b.wait_stage("charging", 10000)
    b.run(2000)
    eq(b.stage(), "charging", "SOC 50 %")
    b.ev.soc = 80
    b.wait_stage("stopping", 1000)
    eq(b.session.stop_why, W.WHY_TARGET, "why")


def test_current_limits_and_ramp():
    b = Bench()
    b.ev.req_i = 3000          # 300 A > BCP 250 A > rating 200 A > 60 kW / 350 V
    b.ev.req_v = 4500          # > BCP max 420 V
    b.wait_stage("charging", 10000)
    b.run(12000)
    r = b.log[-1]
    eq(r[L_ISET], 600 * 10000 // 3500, "power limit 60 kW at 350 V")
    eq(r[L_VSET], 4200, "voltage clamped to BCP max")
    b.session.i_cap = 1200
    t0 = b.now
    b.run(1000)
    isets = [r[L_ISET] for r in b.log if r[0] > t0]
    true(all(isets[k] - isets[k + 1] <= 10 for k in range(len(isets) - 1)), "down 100 A/s")
    eq(isets[-1], 1200, "supervisor cap")
    b.ev.req_i = 500
    b.run(1000)
    eq(b.log[-1][L_ISET], 500, "BCL below every limit")
    # CV mode: same pair of set-points
    b.ev.mode = 1
    b.ev.req_v = 3900
    b.run(500)
    eq(b.log[-1][L_VSET], 3900, "CV voltage")


def test_bsm_pause_resume():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(8000)
    b.ev.st7 = 0xC0            # permit 00: pause
    b.run(1500)
    r = b.log[-1]
    eq(r[L_ISET], 0, "paused: no current")
    eq(r[L_K12], 1, "contactors stay closed")
    eq(b.sent("CCS")[-1][1][6], 0xFC, "CCS permit 00 while paused")
    b.ev.st7 = 0xD0
    t0 = b.now
    b.run(2000)
    isets = [r[L_ISET] for r in b.log if r[0] > t0]
    true(isets[-1] > 0 and all(isets[k + 1] - isets[k] <= 2 for k in range(len(isets) - 1)),
         "resume with the ramp")
    eq(b.sent("CCS")[-1][1][6], 0xFD, "CCS permit 01")
    eq(b.stage(), "charging", "still charging")
    true(b.session.charging, "charging flag")


def test_bsm_pause_longer_than_10_min_ends():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(2000)
    b.ev.st7 = 0xC0
    b.capture = False          # 10 simulated minutes: keep memory small
    t_first = None
    while b.stage() == "charging" and b.now < 700000:
        b.step()
        if t_first is None and b.session.charge.t_pause >= 0:
            t_first = b.session.charge.t_pause
    b.capture = True
    eq(b.stage(), "stopping", "stopped")
    eq(b.session.stop_why, W.WHY_PAUSE, "why")
    eq(b.now - t_first, 600000, "after exactly 10 min of pause")
    eq(bytes(b.session.tx.bufs[6][:4]), b"\x01\x00\xf0\xf0", "last CST sent: condition")
    b.wait_stage("done", 20000)


def test_bmv_bmt_bsp_optional_no_timeout():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(30000)               # the script never sends BMV/BMT/BSP
    eq(b.stage(), "charging", "no timeout on optional messages")
    eq(b.session.cem, 0, "no CEM")


mptest.main(globals())
