"""Charger session: abnormal ends and checks (BCP incompatible, BRO drop,
battery voltage, BSM, unplug, insulation, bleed, self-check, VIN, trip,
pre-charge, lock, current not falling, bad frames).  Simulated ms."""
import mptest
from mptest import eq, true
from bmsscript import (Bench, at, first_change, bcl, bem, gaps, L_STAGE, L_K12, L_K34,
                       L_LOCK, L_BLEED, L_I, L_VOUT, L_PWR)
from gbt import ids
from gbt import messages as m
from gbt import stages as W


def test_bcp_incompatible_ends_with_cst():
    b = Bench()
    b.ev.bcp_args = {"max_v": 1500}              # 150 V < charger min 200 V
    b.wait_stage("stopping", 10000)
    s = b.session
    eq(s.stop_why, W.WHY_BCP, "why")
    eq(b.sent("CST")[0][1], b"\x10\x40\xf0\xf4", "CST fault: no energy transfer, voltage")
    cml = b.sent("CML")
    eq(len(cml), 1, "the charger's limits once (2023-A practice)")
    eq(b.sent("CST")[0][0] - cml[0][0], 10, "then CST")
    b.wait_stage("done", 15000)
    true(b.sent("CSD"), "statistics exchanged")


def test_bcp_incompatible_retry_option():
    b = Bench({"session.bcp_retry": True})
    b.ev.bcp_args = {"max_i": 0}
    b.wait_stage("rehandshake", 10000)
    eq(b.session.timeout_why, W.WHY_BCP, "why")
    b.wait_stage("done", 60000)
    eq(b.session.rehandshakes, 3, "retried 3 times")
    eq(b.session.stop_why, W.WHY_COMM, "then gave up")


def test_bro_drop_from_aa_stops():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(2000)
    b.ev.bro_override = 0x00
    b.wait_stage("stopping", 1000)
    eq(b.session.stop_why, W.WHY_BRO_DROP, "why")
    eq(b.sent("CST")[0][1], b"\x10\x00\xf4\xf0", "CST fault other")


def test_battery_voltage_outside_5_percent():
    b = Bench()
    b.ev.bcp_args = {"v": 3300}                  # battery 350 V, BCP says 330 V (6 %)
    b.wait_stage("precharge", 10000)
    t0 = b.now
    b.wait_stage("stopping", 7000)
    eq(b.now - t0, 5000, "after the 5 s check window (vchk_ms)")
    eq(b.session.stop_why, W.WHY_BATT_V, "why")
    eq(b.sent("CST")[0][1], b"\x10\x00\xf4\xf4", "CST fault other + voltage error")
    true(all(d[0] == 0 for t, d in b.sent("CRO")), "CRO never 0xAA")
    true(all(r[L_K12] == 0 for r in b.log if r[0] > t0), "K1/K2 never closed")


def test_battery_voltage_inside_5_percent_charges():
    b = Bench()
    b.ev.bcp_args = {"v": 3350}                  # 4.5 % off
    b.wait_stage("charging", 10000)


def test_bsm_abnormal_stops():
    for st6, st7, err in ((0x01, 0xD0, 0xF4), (0x10, 0xD0, 0xF1), (0x00, 0xD1, 0xF0),
                          (0x40, 0xD0, 0xF0), (0x08, 0xD0, 0xF0)):
        b = Bench()
        b.wait_stage("charging", 10000)
        b.run(2000)
        b.ev.st6 = st6
        b.ev.st7 = st7
        b.wait_stage("stopping", 1000)
        eq(b.session.stop_why, W.WHY_BSM, "why")
        eq(b.sent("CST")[0][1], bytes([0x10, 0x00, 0xF4, err]), "CST for %x/%x" % (st6, st7))


def test_bsm_untrusted_keeps_charging():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(2000)
    b.ev.st6 = 0xA0                              # over-current / over-temp untrusted (10)
    b.ev.st7 = 0xDA                              # insulation / connector untrusted
    b.run(2000)
    eq(b.stage(), "charging", "untrusted values keep the previous state")


def test_unplug_during_charging():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(3000)
    t0 = b.now
    b.plant.cc1 = 6000                           # S opened / connector removed
    b.wait_stage("stopping", 100)
    cst = b.sent("CST")
    eq(cst[0][0] - t0, 20, "CST within 20 ms")
    eq(cst[0][1], b"\x10\x04\xf0\xf0", "CST connector fault")
    b.wait_stage("done", 5000)
    t_open = first_change(b.log, L_K12, 0, t0)
    true(t_open - t0 <= 100, "K1/K2 open within 100 ms")
    true(at(b.log, t_open)[L_I] <= 50, "at < 5 A")
    eq(len(b.sent("CSD")), 0, "no statistics with the connector gone")
    eq(b.session.need_replug, 1, "re-plug")
    eq(b.session.stop_why, W.WHY_UNPLUG, "why")
    b.run(1100)
    eq(b.stage(), "idle", "idle once unplugged")


def test_insulation_fault_no_charge():
    for profile, fault_b2 in ((0, 0xF4), (1, 0x10)):
        b = Bench({"session.profile": profile})
        b.plant.ins_kohm = 40                    # 80 ohm/V at 500 V
        b.wait_stage("done", 10000)
        s = b.session
        eq(s.stop_why, W.WHY_INS_FAULT, "why")
        eq(s.ins_ohm_v, 80, "ohm/V")
        eq(len(b.sent("CRM")), 0, "no CRM")
        eq(b.sent("CST")[0][1], bytes([0x10, 0x00, fault_b2, 0xF0]), "CST profile %d" % profile)
        r = b.log[-1]
        eq((r[L_K12], r[L_K34], r[L_LOCK]), (0, 0, 0), "open, aux off, unlocked")
        t_open = first_change(b.log, L_K12, 0, first_change(b.log, L_K12, 1))
        eq(first_change(b.log, L_BLEED, 1, t_open), t_open, "bled")


def test_insulation_warning_allows_charging():
    b = Bench()
    b.plant.ins_kohm = 150                       # 300 ohm/V: warning
    b.wait_stage("charging", 10000)
    eq(b.session.ins_warn, 1, "warning")
    eq(b.session.ins_ohm_v, 300, "ohm/V")
    b.plant.ins_kohm = 51                        # 102 ohm/V: still a warning
    b2 = Bench()
    b2.plant.ins_kohm = 51
    b2.wait_stage("charging", 10000)
    eq(b2.session.ins_warn, 1, "warning just above 100 ohm/V")


def test_insulation_bleed_failure():
    b = Bench()
    b.plant.bleed_ok = False
    b.wait_stage("stopping", 10000)
    s = b.session
    eq(s.stop_why, W.WHY_BLEED, "why")
    t_bleed = first_change(b.log, L_BLEED, 1)
    eq(b.now - t_bleed, 1000, "bleed must reach 60 V within 1 s")
    eq(len(b.sent("CRM")), 0, "no CRM")
    b.wait_stage("done", 120000)
    t_unlock = first_change(b.log, L_LOCK, 0, t_bleed)
    true(at(b.log, t_unlock)[L_VOUT] < 600, "unlocked only below 60 V")
    true(all(r[L_LOCK] == 1 for r in b.log if t_bleed <= r[0] < t_unlock), "locked while live")


def _rx_t(b, cid, t0=0):
    ts = [t for (t, c) in b.rx if c == cid and t >= t0]
    return ts[0] if ts else None


def _in_insulation_test(b):
    """Run until the insulation test voltage is on the cable (K1/K2 closed)."""
    b.run_until(lambda: b.stage() == "insulation" and b.out.k12 == 1, 5000, "test voltage")
    b.run(100)
    r = b.log[-1]
    true(r[L_PWR] == 1 and r[L_VOUT] >= 4900, "test voltage on: %r" % (r,))


def test_issue10_item10_bst_during_insulation_stops_test_voltage():
    b = Bench()
    _in_insulation_test(b)
    b.ev.stop()                                  # BST from the next step on
    b.wait_stage("done", 20000)
    s = b.session
    log = b.log
    t_bst = _rx_t(b, ids.ID_BST)
    t_bsd = _rx_t(b, ids.ID_BSD)
    cst = b.sent("CST")
    eq(cst[0], (t_bst, b"\x40\x00\xf0\xf0"), "CST 'BMS stopped' in the tick of the BST")
    true(all(g == 10 for g in gaps(cst)), "CST every 10 ms")
    eq(cst[-1][0], t_bsd - 10, "CST until the BSD")
    # output off and K1/K2 open in that tick, the cable bled below 60 V
    eq(first_change(log, L_PWR, 0, t_bst), t_bst, "test voltage off")
    eq(first_change(log, L_K12, 0, t_bst), t_bst, "K1/K2 open")
    eq(first_change(log, L_BLEED, 1, t_bst), t_bst, "bleeder on")
    t60 = next(r[0] for r in log if r[0] >= t_bst and r[L_VOUT] < 600)
    true(t60 - t_bst <= 1000, "below 60 V within 1 s")
    true(all(r[L_PWR] == 0 and r[L_K12] == 0 for r in log if r[0] >= t_bst), "stays off")
    eq(len(b.sent("CRM")), 0, "no recognition after the BST")
    # statistics: CSD after the BSD, then aux off, unlock
    csd = b.sent("CSD")
    eq(csd[0][0], t_bsd, "CSD from the BSD on")
    t_aux = first_change(log, L_K34, 0, t_bst)
    true(t_aux > csd[0][0], "aux off after CSD")
    eq(log[-1][L_LOCK], 0, "unlocked")
    eq(s.stop_why, W.WHY_BMS, "stop_why")
    eq(s.cem, 0, "no CEM")


def test_issue10_item10_bst_during_handshake_ends_without_output():
    b = Bench()
    b.ev.mute.add("BHM")                         # the charger waits in the handshake
    b.wait_stage("handshake", 2000)
    b.run(1000)
    b.ev.stop()
    b.wait_stage("done", 20000)
    t_bst = _rx_t(b, ids.ID_BST)
    eq(b.sent("CST")[0], (t_bst, b"\x40\x00\xf0\xf0"), "CST answers the BST")
    true(all(r[L_PWR] == 0 and r[L_K12] == 0 for r in b.log), "no test voltage ever")
    true(all(r[L_STAGE] != W.INSULATION for r in b.log), "no insulation test")
    eq(len(b.sent("CRM")), 0, "no CRM")
    true(b.sent("CSD"), "statistics exchanged")
    eq(b.session.stop_why, W.WHY_BMS, "stop_why")


def test_issue10_item10_bem_during_insulation_output_off_session_ends():
    b = Bench()
    _in_insulation_test(b)
    b.deliver(ids.ID_BEM, bem(0xF0))             # every field normal: no error
    b.run(50)
    eq((b.stage(), b.out.pwr_en, b.out.k12), ("insulation", 1, 1), "BEM without a timeout bit")
    b.deliver(ids.ID_BEM, bem(0xF1))             # CRM 0x00 timeout reported
    t0 = b.now
    b.step()
    log = b.log
    eq(first_change(log, L_PWR, 0, t0), t0 + 10, "test voltage off at the next tick")
    eq(first_change(log, L_K12, 0, t0), t0 + 10, "K1/K2 open")
    eq(first_change(log, L_BLEED, 1, t0), t0 + 10, "bleeder on")
    b.wait_stage("done", 20000)
    cst = b.sent("CST")
    eq(cst[0], (t0 + 10, b"\x10\x00\xf4\xf0"), "CST fault 'other'")
    true(all(r[L_PWR] == 0 and r[L_K12] == 0 for r in b.log if r[0] > t0), "stays off")
    eq(len(b.sent("CRM")), 0, "no recognition")
    eq(b.session.stop_why, W.WHY_BEM, "stop_why")
    eq(b.log[-1][L_LOCK], 0, "ended, unlocked")


def test_selfcheck_voltage_outside():
    b = Bench()
    b.plant.ev_closed = True                     # vehicle contactors stuck: 350 V at the gun
    b.wait_stage("stopping", 5000)
    eq(b.session.stop_why, W.WHY_SELFCHECK, "why")
    true(all(r[L_K12] == 0 for r in b.log), "K1/K2 never closed")
    eq(b.sent("CST")[0][1], b"\x10\x00\xf4\xf4", "CST")


def test_bhm_voltage_below_charger_minimum():
    b = Bench()
    b.ev.bhm_v = 1500
    b.wait_stage("stopping", 5000)
    eq(b.session.stop_why, W.WHY_BHM_LOW, "why")


def test_vin_refused():
    b = Bench()
    seen = []

    def check(vin):
        seen.append(vin)
        return (False, "3 warnings today")
    b.session.vin_check = check
    b.wait_stage("stopping", 10000)
    eq(seen, ["LSVAB4BR2EN123456"], "hook called with the VIN")
    s = b.session
    eq(s.stop_why, W.WHY_VIN, "why")
    eq(s.vin_why, "3 warnings today", "reason kept")
    true(all(d[0] == 0 for t, d in b.sent("CRM")), "CRM never 0xAA")
    eq(b.sent("CST")[0][1], b"\x10\x00\xf4\xf0", "CST other fault")


def test_vin_allowed():
    b = Bench()
    b.session.vin_check = lambda vin: True
    b.wait_stage("charging", 10000)


def test_trip_during_charging():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(3000)
    t0 = b.now
    b.session.on_trip(t0, m.CST_F_ESTOP, 0, "estop")
    eq(b.out.k12, 0, "K1/K2 open at once")
    eq(b.out.pwr_en, 0, "power off")
    b.wait_stage("done", 15000)
    cst = b.sent("CST")
    eq(cst[0][0], t0 + 10, "CST at the next tick")
    eq(cst[0][1], b"\x10\x00\xf1\xf0", "CST emergency stop")
    eq(b.session.stop_why, "estop", "why")
    t_aux = first_change(b.log, L_K34, 0, t0)
    t_bsd = [t for (t, c) in b.rx if c == ids.ID_BSD][0]
    true(t_aux > t_bsd and t_aux > b.sent("CSD")[0][0], "aux after CSD/BSD")


def test_request_stop_level_ii():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(6000)
    t0 = b.now
    b.session.request_stop(t0, m.CST_R_FAULT, m.CST_F_OTHER, m.CST_E_CURRENT, "S-2")
    b.wait_stage("done", 15000)
    eq(b.sent("CST")[0][1], b"\x10\x00\xf4\xf1", "CST")
    t_open = first_change(b.log, L_K12, 0, t0)
    true(at(b.log, t_open)[L_I] <= 50, "ramped down first")


def test_precharge_failure():
    for profile, b2 in ((0, 0xF4), (1, 0x40)):
        b = Bench({"session.profile": profile})
        b.wait_stage("precharge", 10000)
        b.plant.v_limit = 1000                   # power stage stuck at 100 V
        t0 = b.now
        b.wait_stage("stopping", 12000)
        t_pre = first_change(b.log, L_PWR, 1, t0)
        eq(b.now - t_pre, 10000, "pre-charge limit 10 s")
        eq(b.session.stop_why, W.WHY_PRECHARGE, "why")
        eq(b.sent("CST")[0][1], bytes([0x10, 0x00, b2, 0xF0]), "CST profile %d" % profile)


def test_lock_failure():
    b = Bench()
    b.plant.lock_works = False
    b.wait_stage("done", 5000)
    eq(b.session.stop_why, W.WHY_LOCK, "why")
    eq(len(b.sent("CHM")), 0, "no CHM")
    eq(len(b.sent("CST")), 0, "nobody to send CST to")
    eq(b.log[-1][L_LOCK], 0, "lock released")


def test_current_not_falling_opens_after_wait():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(3000)
    b.plant.i_stuck = 300
    t0 = b.now
    b.session.operator_stop()
    b.run(1200)
    t_open = first_change(b.log, L_K12, 0, t0)
    eq(t_open - t0, 1010, "opened after open_wait_ms")
    eq(b.session.open_forced, 1, "recorded")


def test_operator_start_mode():
    b = Bench({"session.auto_start": False})
    b.run(2000)
    eq(b.stage(), "connected", "waits for the operator")
    b.session.operator_start()
    b.wait_stage("charging", 10000)


def test_bad_frames_do_not_refresh_timers():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(2000)
    b.ev.mute.add("BCL")
    bad0 = b.session.rx_bad
    t0 = b.now
    while b.stage() == "charging" and b.now < t0 + 3000:
        b.deliver(ids.ID_BCL, bcl(4100, 1000)[:3])   # too short
        b.deliver(ids.ID_BCL, bytes([0x04, 0x10, 0x00, 0x00, 0x07]))  # mode 7
        b.step()
    eq(b.stage(), "rehandshake", "BCL timeout despite bad BCLs")
    true(b.session.rx_bad - bad0 >= 190, "bad frames counted")
    true(b.link.bad_len > 0 and b.link.bad_range > 0, "link counters")


mptest.main(globals())
