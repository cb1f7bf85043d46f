"""Stage 2: recognition (CRM/BRM) and parameter configuration (BCP, CTS,
CML, BRO, CRO, pre-charge).  Case IDs: docs/conformance.md."""
import pytest

from .conftest import (CEM, CHARGER_NO, CST_BMS, CST_FAULT_OTHER, OUT_LAT, RATING, RX_LAT, TICK,
                       data, gaps, ms)

CRM_ID, CML_ID, CTS_ID, CRO_ID = 0x1801F456, 0x1808F456, 0x1807F456, 0x100AF456
EOMA_BRM = bytes.fromhex("13310007ff000200")
EOMA_BCP = bytes.fromhex("130d0002ff000600")
BST_SOC = bytes.fromhex("010000f0")


def _eoma_t(b, pgn_bytes):
    for f in b.tx("TPCM"):
        d = data(f)
        if d[0] == 0x13 and d[5:8] == pgn_bytes:
            return ms(f)
    return None


def _cml_image():
    r = RATING
    return (r["max_v"].to_bytes(2, "little") + r["min_v"].to_bytes(2, "little")
            + (4000 - r["max_i"]).to_bytes(2, "little") + (4000 - r["min_i"]).to_bytes(2, "little"))


# -- DP2001: CRM ------------------------------------------------------------------
def test_dp2001_crm_content_dlc_period(normal):
    b = normal
    crm = b.tx("CRM")
    assert all(f.arbitration_id == CRM_ID and f.dlc == 8 for f in crm)
    assert all(data(f)[1:] == CHARGER_NO + b"ABC" for f in crm)
    t_eoma = _eoma_t(b, b"\x00\x02\x00")
    assert t_eoma is not None and [x for x in b.tp_cm() if x[0] == 0x13][0] == EOMA_BRM
    first_aa = next(f for f in crm if data(f)[0] == 0xAA)
    # 0x00 until the BRM is complete, 0xAA from the next CRM slot on, never back
    assert all(data(f)[0] == 0x00 for f in crm if ms(f) < t_eoma)
    assert 0 < ms(first_aa) - t_eoma <= 250
    assert all(data(f)[0] == 0xAA for f in crm if ms(f) >= ms(first_aa))
    assert data(crm[0])[0] == 0x00
    # one 250 ms grid across the content change
    assert set(gaps(crm)) == {250}
    # CRM stops when the parameter stage starts (CML takes over)
    assert ms(crm[-1]) < ms(b.tx("CML")[0])


# -- DP2002: CTS --------------------------------------------------------------------
def _bcd_ok(x, lo, hi):
    return (x >> 4) <= 9 and (x & 15) <= 9 and lo <= (x >> 4) * 10 + (x & 15) <= hi


def test_dp2002_cts_content_dlc_period(normal):
    b = normal
    cts = b.tx("CTS")
    assert cts and all(f.arbitration_id == CTS_ID and f.dlc == 7 for f in cts)
    for f in cts:
        s, mi, h, d, mo, y, c = data(f)
        assert _bcd_ok(s, 0, 59) and _bcd_ok(mi, 0, 59) and _bcd_ok(h, 0, 23)
        assert _bcd_ok(d, 1, 31) and _bcd_ok(mo, 1, 12) and _bcd_ok(y, 0, 99) and c == 0x20
    assert set(gaps(cts)) <= {500}
    # with CML from the start of the parameter stage, off at pre-charge
    assert ms(cts[0]) == ms(b.tx("CML")[0])
    assert ms(cts[-1]) < b.stage_t("precharge")


def test_dp2002_cts_disabled_by_config(bench):
    b = bench(config={"session.cts_enable": False})
    b.run_to_stage("precharge", 10000)
    assert b.tx("CML") and not b.tx("CTS")


# -- DP2003: CML --------------------------------------------------------------------
def test_dp2003_cml_content_dlc_period(normal):
    b = normal
    cml = b.tx("CML")
    image = _cml_image()
    assert image == bytes.fromhex("4c1dd007d007a00f")        # 750 V, 200 V, 200 A, 0 A
    assert all(f.arbitration_id == CML_ID and f.dlc == 8 and data(f) == image for f in cml)
    assert set(gaps(cml)) == {250}
    t_eoma = _eoma_t(b, b"\x00\x06\x00")
    assert [x for x in b.tp_cm() if x[0] == 0x13][1] == EOMA_BCP
    assert 0 < ms(cml[0]) - t_eoma <= TICK                     # BCP accepted -> CML
    assert ms(cml[-1]) < b.stage_t("precharge") <= ms(cml[-1]) + 250


def test_dp2003_cml_follows_configured_rating(bench):
    cfg = {"rating.max_v": 5000, "rating.min_v": 1500, "rating.max_i": 1250, "rating.min_i": 20}
    b = bench(config=cfg)
    f = b.run_until_tx("CML", 10000)
    # 500.0 V, 150.0 V, 125.0 A -> raw 2750, 2.0 A -> raw 3980 (-400 A offset)
    assert data(f) == bytes.fromhex("8813dc05be0a8c0f")


# -- DP2004 / DN2007 / DN2008: CRO and pre-charge -----------------------------------
def test_dp2004_cro_after_precharge(normal):
    b = normal
    cro = b.tx("CRO")
    assert all(f.arbitration_id == CRO_ID and f.dlc == 1 for f in cro)
    assert set(gaps(cro)) == {250}
    t_k = b.first_change("k12", 1, after=b.stage_t("precharge"))
    m = b.meas_at(t_k - OUT_LAT)                                # what the decision saw
    # K1/K2 close with the output 1..10 V below the battery voltage
    assert 10 <= m["v_outside"] - m["v_inside"] <= 100
    # 0x00 while K1/K2 are open, 0xAA only after they closed
    assert all(data(f) == b"\x00" for f in cro if ms(f) < t_k)
    first_aa = next(f for f in cro if data(f) == b"\xaa")
    assert 0 < ms(first_aa) - t_k <= 250
    assert all(data(f) == b"\xaa" for f in cro if ms(f) > t_k)


def test_dn2007_cro_within_5s_of_bro_aa(normal):
    b = normal
    t_bro = ms(b.first("BRO", sender="B", pred=lambda d: d == b"\xaa"))
    cro = b.tx("CRO")
    assert ms(cro[0]) - t_bro <= TICK + RX_LAT                # first CRO at once
    assert ms(next(f for f in cro if data(f) == b"\xaa")) - t_bro < 5000


def test_dn2008_cro_aa_then_charging(normal):
    b = normal
    cro = b.tx("CRO")
    ccs = b.tx("CCS")
    t_first_dem = ms(b.rx("BCL")[0])                          # before the first BCS completes
    # CRO 0xAA until the first BCL/BCS, then CCS replaces it
    assert ms(cro[-1]) < ms(ccs[0]) and data(cro[-1]) == b"\xaa"
    assert 0 < ms(ccs[0]) - t_first_dem <= TICK + RX_LAT
    assert b.stage_t("charging") is not None


def test_dn2009_charger_not_ready_precharge_fails(bench):
    b = bench()
    b.run_to_stage("precharge", 10000)
    b.sim.override("v_inside", 0)                              # the stage never comes up
    t_cst = ms(b.run_until_tx("CST", 15000))
    t_on = b.first_change("pwr_en", 1, after=b.stage_t("precharge")) - OUT_LAT
    cro = b.tx("CRO")
    assert all(data(f) == b"\x00" for f in cro) and set(gaps(cro)) == {250}
    assert 10000 <= t_cst - t_on <= 10000 + TICK               # pre_ms
    assert data(b.tx("CST")[0]) == CST_FAULT_OTHER
    assert b.first_change("k12", 1, after=b.stage_t("precharge")) is None


def test_dn2010_battery_voltage_mismatch(bench):
    b = bench(scenario=[{"type": "override", "message": "BCP", "stage": "config",
                         "fields": {"voltage_v": 300.0}}])   # pack ~ 340 V: > 5 % off
    t_pre = b.run_to_stage("precharge", 10000)
    t_cst = ms(b.run_until_tx("CST", 7000))
    assert 5000 <= t_cst - t_pre <= 5000 + TICK                # vchk_ms (EN+ 5 s)
    assert data(b.tx("CST")[0]) == bytes.fromhex("1000f4f4")   # fault other, error voltage
    assert b.first_change("pwr_en", 1, after=t_pre) is None
    assert all(data(f) == b"\x00" for f in b.tx("CRO"))


# -- DN2001 .. DN2004: recognition / configuration timeouts ------------------------
def _cem_case(b, cem, t_ref, timeout, ref_is_bms=False):
    f = b.first("CEM")
    assert f is not None, "no CEM"
    b.run_until(lambda: b.now > ms(f) + 5000 + TICK, 6000)
    slack = TICK + (RX_LAT if ref_is_bms else 0)
    assert timeout <= ms(f) - t_ref <= timeout + slack, (ms(f), t_ref)
    hold = b.tx("CEM", after=ms(f) - 1, before=ms(f) + 5000)
    assert all(data(x) == cem and x.dlc == 4 and x.arbitration_id == 0x081FF456 for x in hold)
    assert set(gaps(hold)) == {250} and len(hold) == 20      # CEM held 5 s at 250 ms
    return ms(f)


def _crm_again(b, t_cem):
    b.run_until(lambda: b.first("CRM", after=t_cem) is not None, 8000, "CRM 0x00 again")
    f = b.first("CRM", after=t_cem)
    assert data(f)[0] == 0x00 and 5000 <= ms(f) - t_cem <= 5000 + TICK
    assert not b.tx("CEM", after=ms(f))


def test_dn2001_brm_timeout(bench):
    b = bench(scenario=[{"type": "drop", "message": "BRM", "stage": "recognition",
                         "duration_ms": 6000}])
    b.run_to_stage("rehandshake", 10000)
    t_cem = _cem_case(b, CEM["BRM"], ms(b.tx("CRM")[0]), 5000)
    assert all(data(f)[0] == 0x00 for f in b.tx("CRM", before=t_cem))
    _crm_again(b, t_cem)
    b.run_to_stage("charging", 10000)


def test_dn2002_bcp_timeout(bench):
    b = bench(scenario=[{"type": "drop", "message": "BCP", "stage": "config",
                         "duration_ms": 6000}])
    b.run_to_stage("rehandshake", 10000)
    t_aa = b.first_t("CRM", pred=lambda d: d[0] == 0xAA)
    t_cem = _cem_case(b, CEM["BCP"], t_aa, 5000)
    assert not b.tx("CML")
    _crm_again(b, t_cem)


def test_dn2003_bro_timeout(bench):
    b = bench(scenario=[{"type": "drop", "message": "BRO", "stage": "config"}])
    b.run_to_stage("rehandshake", 10000)
    t_cem = _cem_case(b, CEM["BRO"], ms(b.tx("CML")[0]), 5000)
    assert ms(b.tx("CML", before=t_cem)[-1]) < t_cem and not b.tx("CRO")
    _crm_again(b, t_cem)


def test_dn2004_bro_aa_timeout_60s(bench):
    b = bench(params={"bro_delay_ms": 70000})
    b.run_to_stage("rehandshake", 70000)
    assert b.rx("BRO") and all(data(f) == b"\x00" for f in b.rx("BRO"))
    _cem_case(b, CEM["BRO"], ms(b.tx("CML")[0]), 60000)
    assert not b.tx("CRO")


# -- DN2005: 3 re-handshakes, then communication interrupted, re-plug ------------
def test_dn2005_three_rehandshakes_then_replug(bench):
    b = bench(scenario=[{"type": "drop", "message": "BRM", "at_ms": 0}])
    b.run_to_stage("done", 60000)
    crm0 = [ms(f) for f in b.tx("CRM") if data(f)[0] == 0x00]
    starts = [t for i, t in enumerate(crm0) if i == 0 or t - crm0[i - 1] > 250]
    cem = b.tx("CEM")
    cem_starts = [ms(f) for i, f in enumerate(cem) if i == 0 or ms(f) - ms(cem[i - 1]) > 250]
    assert len(starts) == 4 and len(cem_starts) == 4          # 1 + 3 re-handshakes
    for t_crm, t_cem in zip(starts, cem_starts):
        assert t_cem - t_crm == 5000                           # BRM timeout each time
    for t_cem, t_next in zip(cem_starts, starts[1:]):
        assert t_next - t_cem == 5000                          # CEM hold, then CRM 0x00
    assert all(data(f) == CEM["BRM"] for f in cem)
    # after the 4th timeout: no more CRM, aux off, unlocked, stop reported
    last = cem_starts[-1]
    assert not b.tx("CRM", after=last)
    t_aux = b.first_change("k34", 0, after=last)
    assert t_aux is not None and 5000 <= t_aux - last <= 5000 + TICK + OUT_LAT
    assert b.first_change("lock", 0, after=last) >= t_aux
    assert ("communication interrupted" in [s for _, s in b.texts("stop")])
    # still plugged: no new session by itself
    t_done = b.now
    b.run_for(3000)
    assert not b.tx("CHM", after=t_done)
    # re-plug: out of the CC1 band for > 1 s, back in -> a new session (CHM)
    b.plant.plugged = False
    b.run_for(1500)
    b.plant.plugged = True
    t_back = b.now
    f = b.run_until_tx("CHM", 3000, after=t_back)
    assert data(f) == b"\x01\x01\x00"


# -- DN2006: malformed BRO ------------------------------------------------------------
@pytest.mark.parametrize("how", [{"dlc": 0}, {"raw": "ff"}], ids=["dlc0", "value_ff"])
def test_dn2006_bro_malformed_ignored(bench, how):
    kind = "malformed" if "dlc" in how else "override"
    b = bench(scenario=[dict({"type": kind, "message": "BRO", "stage": "config"}, **how)])
    b.run_to_stage("rehandshake", 10000)
    assert b.rx("BRO")                                         # the BMS did send them
    _cem_case(b, CEM["BRO"], ms(b.tx("CML")[0]), 5000)         # none counted
    assert not b.tx("CRO")


# -- DN2011 / DN2012: BCP incompatible / invalid ------------------------------------
def test_dn2011_bcp_incompatible_stops(bench):
    b = bench(scenario=[{"type": "override", "message": "BCP", "stage": "config",
                         "fields": {"max_voltage_v": 150.0}}])   # below the 200 V minimum
    f = b.run_until_tx("CST", 10000)
    t_bcp = _eoma_t(b, b"\x00\x06\x00")
    assert data(f) == bytes.fromhex("1040f0f4")    # fault, no energy transfer, error voltage
    # 2023-A practice: the BMS is told the charger's limits (one CML), then CST
    cml = b.tx("CML")
    assert len(cml) == 1 and data(cml[0]) == _cml_image()
    assert 0 < ms(cml[0]) - t_bcp <= TICK and ms(f) - ms(cml[0]) == TICK
    assert not b.tx("CEM")
    b.run_to_stage("done", 15000)
    assert b.tx("CSD")                             # the BMS is told, statistics exchanged
    assert b.first_change("pwr_en", 1, after=b.stage_t("recognition")) is None


@pytest.mark.parametrize("patch,cst", [({"2": 0xFF, "3": 0xFF}, "1040f0f1"),
                                       ({"8": 0xFF}, "1040f0f0")],
                         ids=["max_current_ffff", "max_temp_ff"])
def test_dn2012_bcp_invalid_value_stops(bench, patch, cst):
    # a field out of its legal range: incompatible parameters (CML, then CST
    # "no energy transfer"), not a BCP timeout with re-handshakes
    b = bench(scenario=[{"type": "override", "message": "BCP", "stage": "config",
                         "set_bytes": patch}])
    f = b.run_until_tx("CST", 10000)
    assert [x for x in b.tp_cm() if x[0] == 0x13][1] == EOMA_BCP  # transport fine...
    t_bcp = _eoma_t(b, b"\x00\x06\x00")
    cml = b.tx("CML")
    assert len(cml) == 1 and 0 < ms(cml[0]) - t_bcp <= TICK
    assert data(f) == bytes.fromhex(cst) and ms(f) - ms(cml[0]) == TICK
    b.run_to_stage("done", 15000)
    assert not b.tx("CEM") and b.tx("CSD")
    assert [s for _, s in b.texts("stop")] == ["BCP out of range"]


# -- DN2013: BRO 0xAA -> 0x00 during pre-charge -----------------------------------------
def test_dn2013_bro_drop_in_precharge(bench):
    b = bench()
    b.run_to_stage("precharge", 10000)
    t = b.now
    b.send("BRO", b"\x00")
    f = b.run_until_tx("CST", 1000)
    assert data(f) == CST_FAULT_OTHER and ms(f) - t <= TICK + RX_LAT
    assert not any(data(x) == b"\xaa" for x in b.tx("CRO"))


# -- DN2014: BST in the recognition / parameter / pre-charge stages -----------------------
@pytest.mark.parametrize("stage", ["recognition", "parameter", "precharge"])
def test_dn2014_bst_before_charging(bench, stage):
    b = bench()
    b.run_to_stage(stage, 10000)
    t = b.now
    b.send("BST", BST_SOC)
    f = b.run_until_tx("CST", 1000)
    assert data(f) == CST_BMS and ms(f) - t <= TICK + RX_LAT
    assert b.first_change("k12", 1, after=b.stage_t("recognition")) is None
    b.run_for(500)
    for name in ("CRM", "CML", "CTS", "CRO"):
        assert not b.tx(name, after=ms(f))                    # everything else off
    cst, csd = b.tx("CST"), b.tx("CSD")
    assert set(gaps(cst)) <= {10}
    if stage == "recognition":
        # before any BRM: CST until a BSD (10 s max), which this BMS simulator
        # (it did not send the BST itself) never sends; no CSD without it
        assert not csd and len(cst) >= 45
    else:
        # K1/K2 never closed: the CST answer is followed by statistics at once
        assert csd and ms(csd[0]) > ms(cst[-1]) and ms(csd[0]) - ms(f) <= 3 * TICK


def test_dn2014_bst_during_handshake_acted_on_at_once(bench):
    """BST repeated from the handshake on: answered in the handshake (issue 10
    item 10; it used to be ignored until recognition): CST within tick +
    RX_LAT of the first BST, no output after it, never a CRM."""
    b = bench(scenario=[{"type": "inject", "message": "BST", "stage": "handshake",
                         "after_ms": 0, "period_ms": 10, "duration_ms": 30000,
                         "fields": {"reason": ["soc"]}}])
    f = b.run_until_tx("CST", 5000)
    t_bst = ms(b.rx("BST")[0])
    assert data(f) == CST_BMS and ms(f) - t_bst <= TICK + RX_LAT
    b.run_for(3000)
    assert not b.tx("CRM") and b.stage_t("recognition") is None
    assert b.out_at("pwr_en", ms(f) + TICK) == 0 and b.out_at("k12", ms(f) + TICK) == 0
    assert b.first_change("pwr_en", 1, after=ms(f) + TICK) is None
