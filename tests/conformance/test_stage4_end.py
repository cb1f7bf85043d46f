"""Stage 4: end of charging (BST/CST, current down, K1/K2, statistics
BSD/CSD, aux power, unlock).  Case IDs: docs/conformance.md."""
import pytest

from .conftest import (CEM, CHARGER_NO, CST_BMS, CST_CONDITION, CST_CONNECTOR, NORMAL_CONFIG,
                       OUT_LAT, RX_LAT, TICK, data, full_session, gaps, ms)

CST_ID, CSD_ID = 0x101AF456, 0x181DF456


def _ccs_energy_wh(b):
    """Energy from the CCS frames (V x I x 50 ms), the bus's own account."""
    e = 0.0
    for f in b.tx("CCS"):
        d = data(f)
        v = int.from_bytes(d[0:2], "little") / 10.0
        i = (4000 - int.from_bytes(d[2:4], "little")) / 10.0
        e += v * i * 0.05 / 3600.0
    return e


def _end_sequence(b, t_stop):
    """Checks common to every end with a statistics exchange."""
    cst, csd = b.tx("CST"), b.tx("CSD")
    assert cst and all(f.arbitration_id == CST_ID and f.dlc == 4 for f in cst)
    assert set(gaps(cst)) <= {10}
    t_open = b.first_change("k12", 0, after=t_stop)
    assert t_open is not None
    # current <= 5 A before K1/K2 open (B.3.6), the bleeder after them
    assert b.plant_i(t_open) <= 50
    t_bleed = b.first_change("bleed", 1, after=t_stop)
    assert t_bleed is not None and t_bleed >= t_open
    # statistics: CST ends, CSD at 250 ms with the charger number
    assert csd and ms(csd[0]) > ms(cst[-1]) and ms(csd[0]) >= t_open - OUT_LAT
    assert all(f.arbitration_id == CSD_ID and f.dlc == 8 and data(f)[4:8] == CHARGER_NO
               for f in csd)
    assert set(gaps(csd)) == {250}
    # aux power (K3/K4) off only after CSD sent and BSD received
    t_bsd = ms(b.rx("BSD")[0])
    t_aux = b.first_change("k34", 0, after=t_stop)
    assert t_aux > ms(csd[0]) and t_aux > t_bsd + RX_LAT
    assert not b.tx("CSD", after=t_aux)
    # unlock last, with K1/K2 open and the gun below 60 V
    t_unlock = b.first_change("lock", 0, after=t_stop)
    assert t_unlock >= t_aux and b.out_at("k12", t_unlock) == 0
    assert b.meas_at(t_unlock - OUT_LAT)["v_outside"] < 600
    assert b.stage_t("done", t_stop) is not None
    return cst, csd


# -- DP4001: the BMS ends the charge (BST) ------------------------------------------
@pytest.fixture(scope="module")
def bms_stop_1kwh(tmp_path_factory):
    """A complete session the BMS ends with BST (SOC reached) after about
    1.3 kWh (100 Ah pack, 50 -> 54 %): enough energy for the CSD's
    0.1 kWh resolution to be checked (the 'normal' session delivers ~70 Wh,
    less than the tolerance)."""
    b = full_session(tmp_path_factory.mktemp("dp4001"),
                     params={"capacity_ah": 100, "soc": 50, "target_soc": 54},
                     config=NORMAL_CONFIG)
    yield b
    b.close()


def test_dp4001_bms_stop_sequence(bms_stop_1kwh):
    b = bms_stop_1kwh
    bst = b.rx("BST")
    t_bst = ms(bst[0])
    cst, csd = _end_sequence(b, t_bst)
    assert all(data(f) == CST_BMS for f in cst)            # reason: BMS stopped
    assert 0 < ms(cst[0]) - t_bst <= TICK + RX_LAT
    # current down at >= 100 A/s (GB/T 18487.1 B.3.6)
    i0 = b.plant_i(t_bst)
    t_low = next(t for t in range(t_bst, t_bst + 5000, 10) if b.plant_i(t) <= 50)
    assert t_low - t_bst <= (i0 - 50) + 100     # (I0 - 5 A) / (100 A/s) + 100 ms, in ms
    # CSD: minutes (as the last CCS said), energy (0.1 kWh) as delivered, charger number
    d = data(csd[0])
    ccs_min = int.from_bytes(data(b.tx("CCS")[-1])[4:6], "little")
    assert int.from_bytes(d[0:2], "little") == ccs_min >= 1
    e_bus = _ccs_energy_wh(b)                  # the bus's own account (CCS V x I)
    assert e_bus >= 1000                       # >> the 0.1 kWh resolution
    assert abs(e_bus - b.plant.energy_wh) <= 0.01 * b.plant.energy_wh   # = what the cable carried
    assert abs(int.from_bytes(d[2:4], "little") - e_bus / 100.0) < 1.0   # +-0.1 kWh of ~1.3 kWh
    assert all(data(f) == d for f in csd)


# -- DP4002: the charger ends the charge (its own condition) ------------------------
def test_dp4002_charger_stop_sequence(one_minute):
    b = one_minute
    cst = b.tx("CST")
    t_cst = ms(cst[0])
    assert data(cst[0]) == CST_CONDITION
    cst, csd = _end_sequence(b, t_cst)
    # figure A.6 / B.3.7: <= 5 A within 100 ms of the charger's CST
    assert b.plant_i(t_cst - 1) > 1000 and b.plant_i(t_cst + 100) <= 50
    # the BMS answers with BST "charger stopped"; statistics follow
    bst = b.rx("BST")
    assert bst and data(bst[0])[0] == 0x40 and ms(bst[0]) > t_cst
    d = data(csd[0])
    assert int.from_bytes(d[0:2], "little") == 1              # 1 min
    assert int.from_bytes(d[2:4], "little") == 12             # 1.2 kWh (target 1200 Wh)
    assert abs(12 - _ccs_energy_wh(b) / 100.0) < 1.0
    # CST without a break until the BSD is in (and K1/K2 open), then CSD
    # (issue 10 item 10)
    assert ms(csd[0]) - ms(cst[-1]) == TICK and ms(csd[0]) >= ms(b.rx("BSD")[0]) + RX_LAT


def test_dp4003_charger_stop_at_rated_current_100ms(bench):
    # 80 LFP cells (~265 V): the 60 kW charger delivers its full 200 A rating
    b = bench(params={"cells": 80, "capacity_ah": 150, "soc": 30},
              config={"session.target_wh": 150})
    b.run_to_stage("stopping", 30000)
    b.run_for(300)
    cst = b.tx("CST")
    t_cst = ms(cst[0])
    assert data(cst[0]) == CST_CONDITION
    assert b.plant_i(t_cst - 1) == 2000                       # at the rating
    # the set-point is down within 100 ms of the first CST ...
    t_zero = next(t for t, v in b.changes("i_set") if t > t_cst and v <= 50)
    assert t_zero - OUT_LAT - t_cst <= 100
    # ... and so is the current on the cable (figure A.6 / GB/T 18487.1 B.3.7)
    assert b.plant_i(t_cst + 100) <= 50
    t_open = b.first_change("k12", 0, after=t_cst)
    assert b.plant_i(t_open) <= 50


# -- DN4001: BST timeout after the charger's CST -----------------------------------
def test_dn4001_bst_timeout(bench):
    b = bench(config={"session.target_wh": 30},
              scenario=[{"type": "ignore", "message": "CST", "stage": "charging"}])
    t_stop = b.run_to_stage("stopping", 20000)
    t_fin = b.run_to_stage("finish", 15000)
    b.run_for(5000 + 5 * TICK)
    t_cst = ms(b.tx("CST")[0])
    cem = b.tx("CEM")
    assert not b.rx("BST")
    assert cem and ms(cem[0]) - t_cst == 5000                # from the first CST, to the tick
    assert all(data(f) == CEM["BST"] for f in cem) and set(gaps(cem)) == {250}
    assert len(cem) == 20                                    # held 5 s
    assert ms(b.tx("CST")[-1]) < ms(cem[0]) and not b.tx("CSD")
    t_aux = b.first_change("k34", 0, after=t_stop)
    assert 0 <= t_aux - (ms(cem[0]) + 5000) <= TICK + OUT_LAT
    # the vehicle never stopped (no BST): its contactors keep the gun live, so
    # the gun stays locked ...
    assert b.meas_at(b.now)["v_outside"] > 600 and b.out_at("lock", b.now) == 1
    # ... until the vehicle side opens and the gun voltage falls below 60 V
    b.plant.vehicle_closed = False
    b.plant.vehicle_stop_seen = True
    b.run_until(lambda: b.first_change("lock", 0, after=t_fin) is not None, 30000, "unlock")
    t_unlock = b.first_change("lock", 0, after=t_fin)
    assert b.meas_at(t_unlock - OUT_LAT)["v_outside"] < 600
    assert b.meas_at(t_unlock - OUT_LAT - 20)["v_outside"] >= 580


# -- DN4002: CST every 10 ms for at most 10 s -------------------------------------------
def test_dn4002_cst_period_and_10s_limit(bench):
    b = bench()
    b.sim.override("v_outside", 500)              # self-check fault: no statistics exchange
    b.run_to_stage("done", 5000)
    b.run_for(11000)
    cst = b.tx("CST")
    assert set(gaps(cst)) == {10}
    assert ms(cst[-1]) - ms(cst[0]) == 9990 and len(cst) == 1000


def test_dn4002_cst_ends_with_bst_timeout_cem(bench):
    b = bench(config={"session.target_wh": 30},
              scenario=[{"type": "ignore", "message": "CST", "stage": "charging"}])
    b.run_to_stage("finish", 30000)
    b.run_for(1000)
    cst = b.tx("CST")
    assert set(gaps(cst)) == {10} and len(cst) == 500       # 5 s, then the BST CEM


# -- DN4003: BSD timeout -------------------------------------------------------------
def test_dn4003_bsd_timeout(bench):
    b = bench(scenario=[{"type": "bst", "stage": "charging", "after_ms": 2000, "reason": ["soc"]},
                        {"type": "drop", "message": "BSD", "at_ms": 0}])
    t_stop = b.run_to_stage("stopping", 10000)
    b.run_to_stage("done", 20000)
    t_bst = ms(b.rx("BST")[0])
    cem = b.tx("CEM")
    assert cem and all(data(f) == CEM["BSD"] for f in cem) and len(cem) == 20
    # 10 s from the stop (the BST), to the session tick
    assert 10000 <= ms(cem[0]) - t_bst <= 10000 + TICK + RX_LAT
    # CST until the BSD (EN+, GB/T 27930-2023), which never comes: CST at 10 ms
    # for its 10 s (DN4002) up to the CEM; CSD only answers a BSD
    cst = b.tx("CST")
    assert set(gaps(cst)) == {10} and len(cst) == 1000 and ms(cst[-1]) == ms(cem[0]) - 10
    assert not b.tx("CSD")
    t_aux = b.first_change("k34", 0, after=t_stop)
    assert 0 <= t_aux - (ms(cem[0]) + 5000) <= TICK + OUT_LAT
    assert b.first_change("lock", 0, after=t_stop) >= t_aux


# -- DN4004: connector removed during charging ---------------------------------------
def test_dn4004_connector_removed(bench):
    b = bench()
    b.run_to_stage("charging", 10000)
    b.run_for(2000)
    t = b.now
    b.plant.plugged = False
    f = b.run_until_tx("CST", 500)
    assert data(f) == CST_CONNECTOR
    assert ms(f) - t <= 10 + 2 * TICK                     # cc1_lost_ms + tick
    t_open = b.first_change("k12", 0, after=t)
    assert t_open - t <= 100                              # CST and K1/K2 within 100 ms
    b.run_to_stage("done", 5000)
    assert not b.tx("CSD")                                # no CAN without the connector
    t_aux = b.first_change("k34", 0, after=t)
    assert t_aux is not None and b.first_change("lock", 0, after=t) >= t_aux


# -- DN4005: emergency stop during charging -------------------------------------------
def test_dn4005_emergency_stop(bench):
    b = bench(config=NORMAL_CONFIG)
    b.run_to_stage("charging", 10000)
    b.run_for(3000)
    t = b.now
    assert b.plant_i(t - 1) > 300
    b.sim.override("estop", 1)
    b.run_to_stage("done", 5000)
    # output off at once, K1/K2 open and CST within 100 ms (NB/T 33008.1 5.4.7)
    assert b.first_change("pwr_en", 0, after=t) - t <= 2 * TICK
    assert b.first_change("k12", 0, after=t) - t <= 100
    f = b.first("CST", after=t)
    assert data(f) == bytes.fromhex("1000f1f0")           # fault, fault bits: E-stop
    assert ms(f) - t <= 100
    # the BMS is still told: statistics, then aux off and unlock below 60 V
    _end_sequence(b, t)
