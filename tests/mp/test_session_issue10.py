"""Issue 10 (session part): start-up and parameter-stage defects found by
independent tests.  Each case drives the real session + link with the
scripted BMS and asserts what is visible outside: frames on the bus (with
their simulated ms), outputs (K1/K2, set-points, power enable) and the
intrusion evidence the app drains into the event log.

* item 1: BCL before the first CRO 0xAA -> CRO 0xAA still sent, BCL/BCS
  timeouts armed;
* item 2: a BCP / BRM after its stage is not decoded (limits, VIN kept),
  noted as intrusion;
* item 5: BRO 0xAA (BCP) in the receive pass that completed BCP (BRM):
  CML (CRM 0xAA) still sent first;
* item 6: a BCP with a field out of range -> CML once, CST "no energy
  transfer", no re-handshake;
* item 7: no BHM -> no insulation test at the rated voltage (skip by
  default, or a bounded voltage lowered by a late BHM);
* item 8: the battery-voltage check after BRO 0xAA waits 5 s by default.
"""
import micropython
import mptest
from mptest import eq, true
from bmsscript import (Bench, bcl, bcs, bcp, brm, u16, first_change, gaps,
                       L_STAGE, L_K12, L_PWR, L_VSET, L_ISET)
from gbt import ids
from gbt import stages as W
from gbt.intrusion import IX_BCP_LATE, IX_BRM_LATE
from doubles import can_frame

CEM_BCL = b"\xfc\xf0\xc4\xfc"


def _tp_in(b, pgn, payload):
    """One complete multi-packet message from the BMS in this receive pass:
    RTS, (the charger's CTS), every TP.DT."""
    n = len(payload)
    pk = (n + 6) // 7
    b.deliver(ids.ID_TPCM_RX, bytes([0x10] + u16(n) + [pk, 0xFF, pgn & 0xFF, (pgn >> 8) & 0xFF, 0]))
    for k in range(pk):
        chunk = payload[k * 7:k * 7 + 7]
        b.deliver(ids.ID_TPDT_RX, bytes([k + 1]) + chunk + b"\xff" * (7 - len(chunk)))


def _cro_aa(b):
    return [t for t, d in b.sent("CRO") if d[0] == 0xAA]


# -- item 1 ---------------------------------------------------------------------
def test_issue10_item01_bcl_before_cro_aa_then_silent_bcl_timeout():
    """A BMS sends one BCL right after the charger entered CHARGING (before
    the next CRO slot carries 0xAA), then goes silent: CRO 0xAA must still
    go out before CCS, and the BCL timeout (1 s) must stop the current."""
    b = Bench()
    for name in ("BCL", "BCS", "BSM"):
        b.ev.mute.add(name)
    t_chg = b.wait_stage("charging", 10000)
    true(not _cro_aa(b), "precondition: no CRO 0xAA sent yet at %d" % t_chg)
    t_bcl = b.now
    b.deliver(ids.ID_BCL, bcl(4100, 1000))         # right after entering CHARGING
    b.run(8000)                                     # then the BMS is silent
    aa = _cro_aa(b)
    true(aa, "CRO 0xAA sent")
    true(aa[0] > t_bcl, "the BCL came before CRO 0xAA (%d, %d)" % (t_bcl, aa[0]))
    ccs = b.sent("CCS")
    true(ccs and ccs[0][0] > aa[0], "CCS only after CRO 0xAA (%r, %d)" % (ccs[:1], aa[0]))
    cem = b.sent("CEM")
    true(cem, "CEM sent")
    eq(cem[0][1], CEM_BCL, "CEM BCL")
    eq(cem[0][0] - aa[0], 1000, "BCL timeout 1 s after the first CRO 0xAA")
    eq(b.session.timeout_why, W.WHY_BCL_TO, "why")
    t_open = first_change(b.log, L_K12, 0, cem[0][0])
    true(t_open is not None and t_open - cem[0][0] <= 1000, "K1/K2 open after the timeout")
    true(all(r[L_ISET] == 0 and r[L_K12] == 0 for r in b.log
             if t_open <= r[0] < cem[0][0] + 5000), "no current during the CEM hold")


def test_issue10_item01_bcs_before_cro_aa_then_only_bcl_bcs_timeout():
    """A BCS (TP) arrives before the first CRO 0xAA, then the BMS sends BCL
    but never BCS again: CRO 0xAA goes out, then CCS, and the BCS timeout
    (5 s from the first CRO 0xAA) fires."""
    b = Bench()
    b.ev.mute.add("BCS")
    b.wait_stage("charging", 10000)
    true(not _cro_aa(b), "precondition: no CRO 0xAA sent yet")
    t_bcs = b.now
    _tp_in(b, ids.PGN_BCS, bcs(3500, 0))
    b.run(7000)
    aa = _cro_aa(b)
    true(aa and aa[0] > t_bcs, "CRO 0xAA sent after the early BCS")
    ccs = b.sent("CCS")
    true(ccs and ccs[0][0] > aa[0], "CCS only after CRO 0xAA")
    cem = b.sent("CEM")
    true(cem, "CEM sent")
    eq(cem[0][1], b"\xfc\xf0\xc1\xfc", "CEM BCS")
    eq(cem[0][0] - aa[0], 5000, "BCS timeout 5 s after the first CRO 0xAA")


# -- item 2 ---------------------------------------------------------------------
def test_issue10_item02_late_bcp_ignored_limits_kept_intrusion_noted():
    """Mid-charge, a BCP with 700 V / 400 A limits arrives (TP from 0xF4) and
    the BCL demand rises to 650 V: the set-point stays at the BCP limit of the
    parameter stage (420 V), the shared BmsData (what S-1/S-3/S-4/S-6/S-7
    compare against) keeps 420 V / 250 A / 4.20 V, and the link's intrusion
    monitor records one "bcp-late" for PGN 0x600."""
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(2000)
    s = b.session
    bms = b.bms
    ix = b.link.ix
    eq(ix.total(), 0, "a normal start notes nothing")
    b.ev.mute.add("BCS")                  # no BMS transfer open while we inject
    b.run(300)
    _tp_in(b, ids.PGN_BCP, bcp(max_cell=480, max_i=4000, max_v=7000, v=3500))
    b.ev.mute.discard("BCS")
    b.ev.req_v = 6500                     # demand above the real limit
    b.ev.req_i = 3000
    t_inj = b.now
    b.run(3000)
    eq(b.stage(), "charging", "still charging")
    eq((bms.max_v, bms.max_i, bms.max_cell_v), (4200, 2500, 420), "limits of the parameter stage")
    vs = [r[L_VSET] for r in b.log if r[0] > t_inj]
    eq(max(vs), 4200, "set-point held at the BCP max voltage")
    true(max(r[L_ISET] for r in b.log if r[0] > t_inj) <= 2000, "current within rating / BCP")
    eq(ix.count[IX_BCP_LATE], 1, "one late BCP noted")
    e = [0, 0, 0]
    true(ix.read(ix.seq - 1, e), "event readable")
    eq((e[0], e[1], e[2]), (t_inj, IX_BCP_LATE, ids.PGN_BCP), "intrusion event")
    eq(s.stop_why, W.WHY_NONE, "no stop from it")


def test_issue10_item02_late_brm_ignored_vin_kept():
    """A BRM with another VIN and battery data during charging is not
    decoded (VIN, type, rated values unchanged) and is noted as "brm-late";
    a rejected late BCP/BRM allocates nothing."""
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(1000)
    bms = b.bms
    vin0 = bms.vin_str()
    b.ev.mute.add("BCS")
    b.run(300)
    _tp_in(b, ids.PGN_BRM, brm(vin=b"WVWZZZ1JZXW000001", batt_type=1, ah=50, v=7000))
    eq(bms.vin_str(), vin0, "VIN kept")
    eq((bms.batt_type, bms.rated_ah, bms.rated_v), (3, 1500, 3500), "battery data kept")
    eq(b.link.ix.count[IX_BRM_LATE], 1, "late BRM noted")
    # the refusal path (gate + intrusion note) is allocation-free
    pay = bcp(max_v=7000)
    f_rts = can_frame(ids.ID_TPCM_RX, bytes([0x10, 13, 0, 2, 0xFF, 0x00, 0x06, 0x00]))
    f_dt1 = can_frame(ids.ID_TPDT_RX, bytes([1]) + pay[:7])
    f_dt2 = can_frame(ids.ID_TPDT_RX, bytes([2]) + pay[7:] + b"\xff")
    link = b.link
    now = b.now
    n0 = link.gated
    b.capture = False
    b.lean = True                         # the bench's send records nothing
    micropython.heap_lock()
    try:
        for k in range(20):
            link.on_frame(now, f_rts)
            link.on_frame(now, f_dt1)
            link.on_frame(now, f_dt2)
    finally:
        micropython.heap_unlock()
        b.lean = False
        b.capture = True
    eq(b.link.gated - n0, 20, "20 late BCPs refused")
    eq(bms.max_v, 4200, "limit kept")
    b.ev.mute.discard("BCS")


def test_issue10_item02_bcp_repeat_in_parameter_stage_quiet():
    """A BMS repeats BCP until it sees CML: one in the parameter stage is
    dropped without an intrusion record (and without changing the limits)."""
    b = Bench()
    b.ev.bro_delay = 2000
    b.wait_stage("parameter", 10000)
    b.run(100)
    _tp_in(b, ids.PGN_BCP, bcp(max_v=6000))
    eq(b.bms.max_v, 4200, "not decoded")
    eq(b.link.ix.total(), 0, "no intrusion record")
    b.wait_stage("charging", 10000)


# -- item 5 ---------------------------------------------------------------------
def test_issue10_item05_cml_sent_when_bro_in_same_pass():
    """The last BCP packet and BRO 0xAA in one receive pass: CML (and CTS)
    still go out at least once before CRO, and the charge proceeds."""
    b = Bench()
    b.ev.mute.add("BCP")
    b.ev.bro_delay = 0
    b.run_until(lambda: any(d[0] == 0xAA for t, d in b.sent("CRM")), 10000, "CRM 0xAA")
    b.run(50)
    b.plant.ev_closed = True              # the BMS closed K5/K6 with its BRO 0xAA
    t = b.now
    _tp_in(b, ids.PGN_BCP, bcp(v=3500))
    b.deliver(ids.ID_BRO, b"\xaa")
    b.wait_stage("charging", 10000)
    cml = b.sent("CML")
    cro = b.sent("CRO")
    true(cml, "CML sent")
    true(b.sent("CTS"), "CTS sent")
    true(cml[0][0] < cro[0][0], "CML before the first CRO (%r, %r)" % (cml[0], cro[0]))
    eq(cml[0][0], t + 10, "CML at the session tick after the BCP")
    eq(cro[0][0] - cml[0][0], 10, "CRO one tick after CML")


def test_issue10_item05_crm_aa_sent_when_bcp_in_same_pass_as_brm():
    """BRM and BCP complete in the same receive pass: CRM 0xAA still goes
    out (at its next 250 ms slot) before the parameter stage starts CML."""
    b = Bench()
    b.ev.mute.add("BRM")
    b.ev.mute.add("BCP")
    b.wait_stage("recognition", 20000)
    b.run(100)
    _tp_in(b, ids.PGN_BRM, brm())
    _tp_in(b, ids.PGN_BCP, bcp(v=3500))
    b.wait_stage("charging", 10000)
    crm = b.sent("CRM")
    aa = [t for t, d in crm if d[0] == 0xAA]
    cml = b.sent("CML")
    true(aa, "CRM 0xAA sent")
    true(aa[0] < cml[0][0], "CRM 0xAA before CML")
    true(all(g == 250 for g in gaps(crm)), "CRM grid kept")
    eq(cml[0][0] - aa[0], 10, "CML the tick after CRM 0xAA")


# -- item 6 ---------------------------------------------------------------------
def test_issue10_item06_bcp_out_of_range_cml_then_cst_no_rehandshake():
    """BCP max current with a discharge value (raw > 4000, out of range): the
    charger sends its CML once, then CST fault "no energy transfer" with
    error current; no CEM, no re-handshake, statistics, done."""
    b = Bench()
    b.ev.bcp_args = {"max_i": -100}       # raw 4100: -10 A, a discharge
    b.wait_stage("stopping", 10000)
    s = b.session
    eq(s.stop_why, W.WHY_BCP_RANGE, "why")
    cml = b.sent("CML")
    cst = b.sent("CST")
    eq(len(cml), 1, "one CML")
    eq(cst[0][0] - cml[0][0], 10, "CST the tick after CML")
    eq(cst[0][1], b"\x10\x40\xf0\xf1", "CST fault: no energy transfer, current")
    b.wait_stage("done", 15000)
    true(b.sent("CSD"), "statistics exchanged")
    eq(b.sent("CEM"), [], "no CEM")
    eq(s.rehandshakes, 0, "no re-handshake")
    eq(len([1 for t, d in b.sent("CRM") if d[0] == 0]), len(
        [1 for t, d in b.sent("CRM") if d[0] == 0 and t < cml[0][0]]), "no CRM 0x00 again")
    true(all(r[L_PWR] == 0 for r in b.log if r[L_STAGE] != W.INSULATION), "no output")


# -- item 7 ---------------------------------------------------------------------
def test_issue10_item07_no_bhm_skips_insulation_by_default():
    """No BHM: after 10 s the charger goes to recognition (CRM 0x00) without
    putting any voltage on the gun (default no_bhm_ins_v 0), then charges."""
    b = Bench()
    b.ev.mute.add("BHM")
    b.wait_stage("recognition", 15000)
    t_chm = b.sent("CHM")[0][0]
    crm = b.sent("CRM")
    eq(crm[0][0] - t_chm, 10000, "CRM 0x00 10 s after the first CHM")
    eq(crm[0][1][0], 0x00, "CRM 0x00")
    true(b.sent("CHM")[-1][0] < crm[0][0], "CHM stops")
    true(all(r[L_PWR] == 0 and r[L_VSET] == 0 and r[L_K12] == 0 for r in b.log),
         "no test voltage, K1/K2 open")
    eq(b.session.ins_skipped, 1, "reported as skipped")
    eq(b.session.ins_test_v, 0, "no test voltage")
    b.wait_stage("charging", 15000)
    t_pre = first_change(b.log, L_STAGE, W.PRECHARGE)
    eq(first_change(b.log, L_PWR, 1), t_pre + 10, "first output in pre-charge")


def test_issue10_item07_no_bhm_bounded_test_voltage():
    b = Bench({"session.no_bhm_ins_v": 4000})
    b.ev.mute.add("BHM")
    b.wait_stage("recognition", 20000)
    eq(b.session.ins_test_v, 4000, "test at the configured bound")
    eq(max(r[L_VSET] for r in b.log), 4000, "never above 400 V")
    eq(b.session.ins_skipped, 0, "tested")


def test_issue10_item07_late_bhm_lowers_test_voltage():
    """Bounded test at 500 V after a BHM timeout; a BHM (380 V) arrives during
    the test: within one tick the set-point drops to 380 V and the reading is
    taken at 380 V."""
    b = Bench({"session.no_bhm_ins_v": 5000})
    b.ev.mute.add("BHM")
    b.wait_stage("insulation", 15000)
    b.run(200)
    b.ev.bhm_v = 3800
    b.ev.mute.discard("BHM")
    b.ev.phase = "bhm"                     # the vehicle starts its handshake late
    t_bhm = b.run_until(lambda: b.bms.bhm_max_v == 3800, 1000, "BHM decoded")
    b.wait_stage("recognition", 15000)
    after = [r[L_VSET] for r in b.log if r[0] >= t_bhm and r[L_STAGE] == W.INSULATION]
    true(after and max(after) <= 3800, "never above the BHM voltage after it: %r" % (after[:3],))
    eq(b.session.ins_test_v, 3800, "measured at 380 V")
    true(b.session.ins_ohm_v > 0, "a reading")


# -- item 8 ---------------------------------------------------------------------
def test_issue10_item08_slow_vehicle_contactors_charge():
    """The vehicle's K5/K6 close 3 s after its BRO 0xAA (battery voltage
    appears late at the gun): the default 5 s check window waits for it;
    pre-charge starts only then and the charge proceeds."""
    b = Bench()
    b.wait_stage("precharge", 10000)
    t_pre = b.now
    t_close = t_pre + 3000
    p = b.plant
    upd = p.update

    def slow(out, inp):
        if b.now < t_close:
            p.ev_closed = False
        upd(out, inp)
    p.update = slow
    b.wait_stage("charging", 10000)
    eq(b.session.stop_why, W.WHY_NONE, "no stop")
    t_on = first_change(b.log, L_PWR, 1, t_pre)
    true(t_on > t_close, "pre-charge output only once the battery is seen (%d)" % t_on)


mptest.main(globals())
