"""Charger session: every charger-side receive timeout, its CEM bit, the
re-handshake rule (max 3, then re-plug).  Simulated ms."""
import mptest
from mptest import eq, true
from bmsscript import (Bench, gaps, at, first_change, rx_last, bem,
                       L_STAGE, L_K12, L_K34, L_I)
from gbt import ids
from gbt import messages as m
from gbt import stages as W

CEM_BRM = b"\xfd\xf0\xc0\xfc"
CEM_BCP = b"\xfc\xf1\xc0\xfc"
CEM_BRO = b"\xfc\xf4\xc0\xfc"
CEM_BCS = b"\xfc\xf0\xc1\xfc"
CEM_BCL = b"\xfc\xf0\xc4\xfc"
CEM_BST = b"\xfc\xf0\xd0\xfc"
CEM_BSD = b"\xfc\xf0\xc0\xfd"


def _cem_phase(b, t0, data):
    """CEM frames from t0: all `data`, every 250 ms, for 5 s."""
    cem = [f for f in b.sent("CEM", t0) if f[0] < t0 + 5000]
    true(cem and cem[0][0] == t0, "CEM starts at %d: %r" % (t0, cem[:1]))
    true(all(d == data for t, d in cem), "CEM bytes %r" % (cem[0][1],))
    true(all(g == 250 for g in gaps(cem)), "CEM period")
    eq(len(cem), 20, "CEM for 5 s")


def test_bhm_missing_bound_below_charger_minimum_skips_test():
    b = Bench({"session.no_bhm_ins_v": 1000})     # 100 V < rating.min_v 200 V
    b.ev.mute.add("BHM")
    b.wait_stage("recognition", 15000)
    t0 = b.sent("CHM")[0][0]
    eq(b.now - t0, 10000, "BHM wait 10 s")
    eq(b.session.ins_skipped, 1, "test skipped, not raised to 200 V")
    true(all(r[L_K12] == 0 for r in b.log), "no test voltage")
    b.wait_stage("charging", 10000)


def test_bhm_missing_ends_without_legacy():
    b = Bench({"session.bhm_legacy": False})
    b.ev.mute.add("BHM")
    b.wait_stage("done", 20000)
    s = b.session
    eq(s.stop_why, W.WHY_NO_BHM, "why")
    t0 = b.sent("CHM")[0][0]
    eq(b.sent("CST")[0][0] - t0, 10000, "CST after 10 s")
    eq(b.sent("CST")[0][1], b"\x10\x00\xf4\xf0", "CST fault other")
    eq(len(b.sent("CRM")), 0, "no CRM")
    eq(b.log[-1][L_K34], 0, "aux off")


def test_brm_timeout_cem_then_rehandshake():
    b = Bench()
    b.ev.mute.add("BRM")
    b.wait_stage("rehandshake", 15000)
    crm = b.sent("CRM")
    t_cem = b.sent("CEM")[0][0]
    eq(t_cem - crm[0][0], 5000, "BRM timeout 5 s after the first CRM 0x00")
    b.ev.mute.discard("BRM")
    b.wait_stage("charging", 20000)
    _cem_phase(b, t_cem, CEM_BRM)
    crm2 = b.sent("CRM", t_cem)
    eq(crm2[0][0] - t_cem, 5000, "CRM 0x00 again after the 5 s CEM hold")
    eq(crm2[0][1][0], 0x00, "from CRM 0x00")
    true(not b.sent("CRM", t_cem, t_cem + 4990), "no CRM during the hold")
    s = b.session
    eq(s.rehandshakes, 1, "one re-handshake")
    eq(s.cem, m.CEM_BRM, "cem bits")
    eq(s.timeout_why, W.WHY_BRM_TO, "why")


def test_three_rehandshakes_then_stop_and_replug():
    b = Bench()
    b.ev.mute.add("BRM")
    b.wait_stage("recognition", 5000)
    t0 = b.now
    b.wait_stage("done", 60000)
    s = b.session
    crm = b.sent("CRM")
    starts = [crm[0][0]] + [crm[k + 1][0] for k in range(len(crm) - 1)
                            if crm[k + 1][0] - crm[k][0] > 250]
    eq([t - starts[0] for t in starts], [0, 10000, 20000, 30000], "CRM 0x00 phases")
    cem = b.sent("CEM")
    cstarts = [cem[0][0]] + [cem[k + 1][0] for k in range(len(cem) - 1)
                             if cem[k + 1][0] - cem[k][0] > 250]
    eq([t - starts[0] for t in cstarts], [5000, 15000, 25000, 35000], "4 timeouts")
    eq(s.rehandshakes, 3, "3 re-handshakes")
    eq(s.stop_why, W.WHY_COMM, "interrupted")
    eq(s.need_replug, 1, "re-plug required")
    t_aux = first_change(b.log, L_K34, 0, t0)
    eq(t_aux - starts[0], 40010, "aux off at the tick after the last CEM hold")
    # operator start does not restart; a re-plug does
    b.session.operator_start()
    b.run(2000)
    eq(b.stage(), "done", "no restart without re-plug")
    b.plant.cc1 = 12000
    b.run(1100)
    eq(b.stage(), "idle", "unplugged")
    b.plant.cc1 = 4000
    b.ev.mute.discard("BRM")
    b.ev.reset()
    b.wait_stage("charging", 20000)
    eq(b.session.rehandshakes, 0, "fresh session")


def test_bcp_timeout():
    b = Bench()
    b.ev.mute.add("BCP")
    b.wait_stage("rehandshake", 15000)
    aa = [f for f in b.sent("CRM") if f[1][0] == 0xAA]
    t_cem = b.sent("CEM")[0][0]
    eq(t_cem - aa[0][0], 5000, "BCP timeout 5 s after the first CRM 0xAA")
    b.run(5000)
    _cem_phase(b, t_cem, CEM_BCP)


def test_bro_timeout_none_at_all():
    b = Bench()
    b.ev.mute.add("BRO")
    b.wait_stage("rehandshake", 15000)
    t_cem = b.sent("CEM")[0][0]
    eq(t_cem - b.sent("CML")[0][0], 5000, "no BRO within 5 s of CML")
    b.run(5000)
    _cem_phase(b, t_cem, CEM_BRO)


def test_bro_aa_timeout_60s():
    b = Bench()
    b.ev.mute.add("BRO_AA")
    b.wait_stage("parameter", 15000)
    b.capture = True
    b.wait_stage("rehandshake", 70000)
    t_cem = b.sent("CEM")[0][0]
    eq(t_cem - b.sent("CML")[0][0], 60000, "BRO 0xAA within 60 s")
    eq(b.sent("CML")[-1][0], t_cem - 250, "CML until then")


def test_bcl_timeout():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(8000)
    b.ev.mute.add("BCL")
    b.wait_stage("rehandshake", 3000)
    t_last = rx_last(b, ids.ID_BCL)
    t_cem = b.sent("CEM")[0][0]
    eq(t_cem - t_last, 1000, "BCL timeout 1 s")
    b.ev.mute.discard("BCL")
    b.run(5100)
    _cem_phase(b, t_cem, CEM_BCL)
    true(not b.sent("CCS", t_cem), "CCS stops at the timeout")
    t_open = first_change(b.log, L_K12, 0, t_cem)
    true(at(b.log, t_open)[L_I] <= 50 and t_open - t_cem <= 100, "K1/K2 open at < 5 A")
    crm = b.sent("CRM", t_cem)
    eq(crm[0][0] - t_cem, 5000, "re-handshake after the hold")
    b.wait_stage("charging", 20000)
    eq(b.session.rehandshakes, 1, "count")


def test_bcs_timeout():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(3000)
    b.ev.mute.add("BCS")
    b.wait_stage("rehandshake", 8000)
    t_last = rx_last(b, ids.ID_TPDT_RX)      # last BCS completed with its last TP.DT
    t_cem = b.sent("CEM")[0][0]
    eq(t_cem - t_last, 5000, "BCS timeout 5 s")
    b.run(5000)
    _cem_phase(b, t_cem, CEM_BCS)


def test_bst_timeout_after_cst():
    b = Bench()
    b.ev.mute.add("BST")
    b.wait_stage("charging", 10000)
    b.run(3000)
    b.session.operator_stop()
    b.wait_stage("finish", 8000)
    cst = b.sent("CST")
    t_cem = b.sent("CEM")[0][0]
    eq(t_cem - cst[0][0], 5000, "BST timeout 5 s after the first CST")
    eq(cst[-1][0], t_cem - 10, "CST until the timeout")
    b.wait_stage("done", 8000)
    _cem_phase(b, t_cem, CEM_BST)
    eq(first_change(b.log, L_K34, 0, t_cem) - t_cem, 5000, "aux off after the CEM hold")
    eq(b.session.stop_detail, W.WHY_BST_TO, "detail")
    eq(len(b.sent("CSD")), 0, "no statistics")
    eq(b.session.rehandshakes, 0, "no re-handshake after BST timeout")


def test_bsd_timeout():
    b = Bench()
    b.ev.mute.add("BSD")
    b.wait_stage("charging", 10000)
    b.run(3000)
    b.ev.stop()
    b.wait_stage("finish", 15000)
    t_cem = b.sent("CEM")[0][0]
    cst = b.sent("CST")
    eq(t_cem - cst[0][0], 10000, "BSD timeout 10 s after the stop")
    # CST until the BSD (which never comes): its 10 s window, 1000 frames;
    # CSD only answers a BSD (issue 10 item 10)
    true(all(g == 10 for g in gaps(cst)), "CST every 10 ms")
    eq((len(cst), cst[-1][0]), (1000, t_cem - 10), "CST until the timeout")
    eq(len(b.sent("CSD")), 0, "no CSD without BSD")
    b.wait_stage("done", 8000)
    _cem_phase(b, t_cem, CEM_BSD)
    eq(b.session.stop_detail, W.WHY_BSD_TO, "detail")


def test_bem_received_rehandshake_without_cem():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(3000)
    b.deliver(ids.ID_BEM, bem(0xF0))             # all fields normal: ignored
    b.run(100)
    eq(b.stage(), "charging", "BEM without a timeout bit")
    b.deliver(ids.ID_BEM, bem(0xF1))             # CRM 0x00 timeout reported
    t0 = b.now
    b.step()
    eq(b.stage(), "rehandshake", "re-handshake")
    b.run(5100)
    eq(len(b.sent("CEM")), 0, "no CEM bit for a BEM")
    eq(b.sent("CRM", t0)[0][0] - t0, 5000, "CRM 0x00 after the hold")
    eq(b.session.timeout_why, W.WHY_BEM, "why")


mptest.main(globals())
