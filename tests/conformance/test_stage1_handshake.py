"""Stage 1: physical connection, auxiliary power, handshake (CHM/BHM),
self-check and insulation test.  Case IDs: docs/conformance.md."""
from .conftest import CST_FAULT_OTHER, OUT_LAT, RX_LAT, TICK, data, gaps, ms

CHM_ID = 0x1826F456
BHM_V = 3504                    # 96 x 3.65 V (BmsParams default max voltage), 0.1 V


# -- DP1001: lock, then aux power, then CHM -------------------------------------
def test_dp1001_lock_before_aux_and_output(normal):
    b = normal
    t_lock = b.first_change("lock", 1)
    t_aux = b.first_change("k34", 1)
    t_out = b.first_change("pwr_en", 1)
    t_chm = ms(b.tx("CHM")[0])
    assert t_lock is not None and t_aux is not None and t_out is not None
    # lock commanded first; aux (K3/K4) only after the lock feedback (plant: 80 ms)
    assert t_lock < t_aux and t_aux - t_lock >= 80
    # K3/K4 on no later than the first CHM (same session tick)
    assert 0 <= t_chm - (t_aux - OUT_LAT) <= TICK
    # no insulation-test voltage before the gun is locked (TESTDB D0.1001)
    assert t_out > t_aux > t_lock
    # the lock stays closed from then until the end stage
    assert [v for t, v in b.changes("lock") if t > 0][0] == 1
    t_unlock = b.first_change("lock", 0, after=t_lock)
    assert t_unlock > ms(b.tx("CSD")[-1])


# -- DP1002: CHM content, DLC, id, period ----------------------------------------
def test_dp1002_chm_content_dlc_period(normal):
    b = normal
    chm = b.tx("CHM")
    assert len(chm) >= 5
    assert all(f.arbitration_id == CHM_ID for f in chm)
    assert all(f.dlc == 3 and data(f) == b"\x01\x01\x00" for f in chm)
    assert set(gaps(chm)) == {250}
    # CHM from the handshake until the recognition stage, then never again
    t_rec = b.stage_t("recognition")
    assert ms(chm[-1]) < t_rec <= ms(chm[-1]) + 250
    assert ms(b.tx("CRM")[0]) == t_rec


# -- DP1003: insulation test voltage, K1/K2, bleed, then CRM ---------------------
def test_dp1003_insulation_test_then_crm(normal):
    b = normal
    t_bhm = ms(b.rx("BHM")[0])
    t_out = b.first_change("pwr_en", 1)
    # output = min(BHM max voltage, rated voltage) once BHM is in
    assert b.out_at("v_set", t_out) == min(BHM_V, 7500)
    assert t_out - t_bhm <= TICK + RX_LAT + OUT_LAT
    t_k = b.first_change("k12", 1)
    m = b.meas_at(t_k - OUT_LAT)
    assert abs(m["v_inside"] - BHM_V) <= 100            # stable at the test voltage (+-10 V)
    t_off = b.first_change("pwr_en", 0, after=t_k)
    t_open = b.first_change("k12", 0, after=t_k)
    t_bleed = b.first_change("bleed", 1, after=t_out)
    # bleeder off while the test voltage is applied, on once the output is off
    assert b.out_at("bleed", t_out) == 0 and b.out_at("bleed", t_off - 1) == 0
    assert t_off == t_bleed and t_open > t_off
    # bleed below 60 V within 1 s (GB/T 18487.1 B.4.2), then K1/K2 open
    assert t_open - t_bleed <= 1000
    assert b.meas_at(t_open - OUT_LAT)["v_inside"] < 600
    # CRM 0x00 only after the insulation test is over (TESTDB wording)
    t_crm = ms(b.tx("CRM")[0])
    assert t_crm >= t_open - OUT_LAT and data(b.tx("CRM")[0])[0] == 0x00


# -- DN1001 / DN1003: BHM absent or invalid -> no-BHM path after 10 s ----------
# Default (session.no_bhm_ins_v 0, EN+ practice): the insulation test is
# skipped, CRM 0x00 follows the 10 s BHM wait, nothing is put on the gun
# before the pre-charge (never the rated voltage to a vehicle of unknown limit).
def _bhm_wait(bench, scenario, config=None):
    b = bench(scenario=scenario, config=config)
    t_rec = b.run_to_stage("recognition", 20000)
    t_chm = ms(b.tx("CHM")[0])
    t_crm = ms(b.tx("CRM")[0])
    return b, t_chm, t_crm, t_rec


def _no_output_before_precharge(b):
    t_pre = b.run_to_stage("precharge", 20000)
    b.run_to_stage("charging", 20000)
    t_out = b.first_change("pwr_en", 1)
    assert t_out is not None and t_out > t_pre
    assert b.first_change("k12", 1, after=0) > t_pre
    assert b.stage_t("insulation") is None


def test_dn1001_bhm_absent_insulation_skipped(bench):
    b, t_chm, t_crm, t_rec = _bhm_wait(bench, [{"type": "drop", "message": "BHM", "at_ms": 0}])
    assert 10000 <= t_crm - t_chm <= 10000 + TICK
    assert data(b.tx("CRM")[0])[0] == 0x00
    assert not b.tx("CHM", after=t_crm)
    assert not b.tx("CEM") and not b.tx("CST")
    _no_output_before_precharge(b)


def test_dn1001_bhm_absent_bounded_test_voltage(bench):
    b = bench(scenario=[{"type": "drop", "message": "BHM", "at_ms": 0}],
              config={"session.no_bhm_ins_v": 4000})
    b.run_to_stage("recognition", 20000)
    t_chm = ms(b.tx("CHM")[0])
    t_out = b.first_change("pwr_en", 1)
    assert 10000 <= t_out - t_chm <= 10000 + TICK
    assert b.out_at("v_set", t_out) == 4000             # the configured bound, not 750 V
    assert max(v for t, v in b.changes("v_set") if t < b.stage_t("recognition")) == 4000


def test_dn1003_bhm_wrong_dlc_ignored(bench):
    b, t_chm, t_crm, _ = _bhm_wait(bench, [{"type": "malformed", "message": "BHM", "at_ms": 0,
                                            "dlc": 1}])
    assert all(f.dlc == 1 for f in b.rx("BHM"))
    assert 10000 <= t_crm - t_chm <= 10000 + TICK        # as if absent
    _no_output_before_precharge(b)


def test_dn1003_bhm_not_available_value_ignored(bench):
    b, t_chm, t_crm, _ = _bhm_wait(bench, [{"type": "override", "message": "BHM", "at_ms": 0,
                                            "raw": "ffff"}])
    assert 10000 <= t_crm - t_chm <= 10000 + TICK
    _no_output_before_precharge(b)


def test_dn1002_bhm_absent_no_legacy_ends(bench):
    b = bench(scenario=[{"type": "drop", "message": "BHM", "at_ms": 0}],
              config={"session.bhm_legacy": False})
    b.run_to_stage("done", 15000)
    t_chm = ms(b.tx("CHM")[0])
    cst = b.tx("CST")
    assert 10000 <= ms(cst[0]) - t_chm <= 10000 + TICK
    assert data(cst[0]) == CST_FAULT_OTHER
    assert b.first_change("pwr_en", 1) is None          # no test voltage ever
    assert not b.tx("CRM")
    t_aux = b.first_change("k34", 0, after=t_chm)
    assert t_aux is not None and b.first_change("lock", 0, after=t_chm) >= t_aux


# -- DN1004: BHM voltage below the charger's minimum ----------------------------
def test_dn1004_bhm_below_charger_min(bench):
    b = bench(scenario=[{"type": "override", "message": "BHM", "at_ms": 0,
                         "fields": {"max_voltage_v": 150.0}}])
    b.run_to_stage("done", 5000)
    cst = b.tx("CST")
    t_bhm = ms(b.rx("BHM")[0])
    assert data(cst[0]) == bytes.fromhex("1000f4f4")    # fault other, error voltage
    assert ms(cst[0]) - t_bhm <= TICK + RX_LAT
    assert b.first_change("pwr_en", 1) is None and not b.tx("CRM")


# -- DN1005: voltage outside K1/K2 >= 10 V before the insulation test -----------
def test_dn1005_voltage_outside_before_insulation(bench):
    b = bench()
    b.sim.override("v_outside", 500)                    # 50 V on the gun
    b.run_to_stage("done", 5000)
    cst = b.tx("CST")
    assert data(cst[0]) == bytes.fromhex("1000f4f4")
    assert b.first_change("pwr_en", 1) is None and b.first_change("k12", 1) is None
    assert not b.tx("CRM")


# -- DN1006 / DN1007: insulation fault / warning ---------------------------------
def test_dn1006_insulation_fault_no_charge(bench):
    b = bench()
    b.sim.override("insulation_kohm", 30)                # 30 kOhm / 350 V = 86 ohm/V
    b.run_to_stage("done", 8000)
    t_k = b.first_change("k12", 1)
    cst = b.tx("CST")
    assert data(cst[0]) == CST_FAULT_OTHER
    # the monitor sees the fault as soon as K1/K2 close: output off, K1/K2 open
    # and CST within 100 ms (GB/T 18487.1 "fault that prevents charging")
    assert ms(cst[0]) - t_k <= 100
    assert b.first_change("pwr_en", 0, after=t_k) - t_k <= 100
    assert b.first_change("k12", 0, after=t_k) - t_k <= 100
    assert not b.tx("CRM")
    t_unlock = b.first_change("lock", 0, after=t_k)
    assert t_unlock is not None and b.meas_at(t_unlock)["v_outside"] < 600
    assert [s for _, s in b.texts("stop")] == ["protection trip"]


def test_dn1007_insulation_warning_still_charges(bench):
    b = bench()
    b.sim.override("insulation_kohm", 100)               # 285 ohm/V: warning band
    b.run_to_stage("charging", 8000)
    assert not b.tx("CST") and b.tx("CRM")


# -- issue 10 item 10: BST / BEM during the handshake and the insulation test -----
CST_BMS = bytes.fromhex("4000f0f0")


def test_issue10_item10_bst_during_insulation_test(bench):
    """The BMS simulator stops (BST) while the insulation test voltage is on
    the cable: output off and K1/K2 open within a tick, bleed below 60 V,
    CST 'BMS stopped' every 10 ms until the BSD, then CSD; no CRM; aux off
    after CSD and BSD, unlock.  (Base: BST ignored, test and CRM go on.)"""
    b = bench(scenario=[{"type": "bst", "stage": "handshake", "after_ms": 800,
                         "reason": ["soc"]}])
    b.run_until(lambda: b.rx("BST"), 5000, "BST")
    t_bst = ms(b.rx("BST")[0])
    assert b.out_at("pwr_en", t_bst) == 1 and b.out_at("k12", t_bst) == 1   # test voltage on
    b.run_for(12000)
    t_off = b.first_change("pwr_en", 0, after=t_bst)
    assert t_off is not None and t_off - t_bst <= RX_LAT + TICK + OUT_LAT
    assert b.first_change("k12", 0, after=t_bst) == t_off
    t_bleed = b.first_change("bleed", 1, after=t_bst)
    assert t_bleed == t_off
    t60 = next(t for t in range(t_off, t_off + 2000, 10) if b.meas_at(t)["v_outside"] < 600)
    assert t60 - t_off <= 1000
    assert not b.tx("CRM") and b.stage_t("recognition") is None
    cst, csd = b.tx("CST"), b.tx("CSD")
    assert cst and all(data(f) == CST_BMS for f in cst) and set(gaps(cst)) <= {10}
    assert 0 < ms(cst[0]) - t_bst <= RX_LAT + TICK
    t_bsd = ms(b.rx("BSD")[0])
    assert csd and ms(csd[0]) - ms(cst[-1]) == TICK and ms(csd[0]) >= t_bsd + RX_LAT
    t_aux = b.first_change("k34", 0, after=t_bst)
    assert t_aux > ms(csd[0]) and b.first_change("lock", 0, after=t_bst) >= t_aux
    assert b.stage_t("done", t_bst) is not None and not b.tx("CEM")
    assert b.bms.done


def test_issue10_item10_bem_during_insulation_test(bench):
    """BEM (CRM timeout reported) while the test voltage is on: output off and
    K1/K2 open within a tick, bleed, CST fault 'other', no CRM, session ended.
    (Base: BEM ignored.)"""
    b = bench()
    b.run_until(lambda: b.out_at("k12", b.now) == 1, 5000, "K1/K2 closed")
    b.run_for(200)
    t = b.now
    b.send("BEM", bytes.fromhex("f1f0f0fc"))
    b.run_for(5000)
    t_off = b.first_change("pwr_en", 0, after=t)
    assert t_off is not None and t_off - t <= RX_LAT + TICK + OUT_LAT
    assert b.first_change("k12", 0, after=t) == t_off
    assert b.first_change("bleed", 1, after=t) == t_off
    cst = b.tx("CST")
    assert cst and data(cst[0]) == CST_FAULT_OTHER and ms(cst[0]) - t <= RX_LAT + TICK
    assert not b.tx("CRM") and b.stage_t("done", t) is not None
