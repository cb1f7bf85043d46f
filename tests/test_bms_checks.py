"""The verdicts: a correct charger passes, each single misbehaviour of the scripted charger FAILs
the matching check (and only makes sense if the check can fail)."""
import pytest

from host_tools.bms import BmsParams
from host_tools.bms.checks import CheckResult, Recorder, evaluate, overall
from tests.test_bms_support import session, verdicts

LONG = {"target_soc": 60.0}
BST_AT_2S = [{"type": "bst", "stage": "charging", "after_ms": 2000, "reason": "total_voltage"}]


def short(channel, until=5000, params=None, **kw):
    return session(channel, dict(LONG, **(params or {})), until=until, stop_when_done=False, **kw)


@pytest.fixture(scope="module")
def good():
    return short("ck_good", until=5000)


def test_correct_charger_has_no_fail(good):
    sim = good[0]
    assert overall(sim.report()) == "PASS"
    v = verdicts(sim)
    assert v["period.CCS"].verdict == "PASS" and v["period.CCS"].measured.startswith("mean 50.0")
    assert v["dlc.CST"].verdict == "NOT RUN"                     # no stop in this run


def test_ccs_period_70ms_fails():
    sim, _, _ = short("ck_ccs70", periods={"CCS": 70})
    r = verdicts(sim)["period.CCS"]
    assert r.verdict == "FAIL" and "mean 70.0" in r.measured and r.limit == "50 +-5.0 ms"


def test_period_tolerance_is_configurable():
    sim, _, _ = short("ck_ccs54", periods={"CCS": 54}, params={"checks": {"period_tol_pct": 10}}, step_ms=2)
    assert verdicts(sim)["period.CCS"].verdict == "PASS"
    sim, _, _ = short("ck_ccs54b", periods={"CCS": 54}, params={"checks": {"period_tol_pct": 5}}, step_ms=2)
    assert verdicts(sim)["period.CCS"].verdict == "FAIL"


def test_wrong_chm_version_fails():
    sim, _, _ = short("ck_chm", until=1500, version=b"\x01\x00\x00")
    r = verdicts(sim)["content.CHM"]
    assert r.verdict == "FAIL" and r.measured == "version 01 00 00"


def test_crm_aa_before_brm_fails():
    sim, _, _ = short("ck_crm", until=2500, crm_aa_early=True)
    assert verdicts(sim)["content.CRM"].verdict == "FAIL"


def test_cro_aa_before_bro_aa_fails():
    sim, _, _ = short("ck_cro", until=3000, cro_aa_early=True)
    assert verdicts(sim)["content.CRO"].verdict == "FAIL"


def test_ccs_dlc_7_fails_unless_configured():
    sim, _, _ = short("ck_dlc7", ccs_dlc=7)
    assert verdicts(sim)["dlc.CCS"].verdict == "FAIL"
    sim, _, _ = short("ck_dlc7b", ccs_dlc=7, params={"checks": {"ccs_dlc": 7}})
    assert verdicts(sim)["dlc.CCS"].verdict == "PASS"


def test_slow_cst_after_bst_fails():
    sim, _, _ = short("ck_cst_slow", until=12000, scenario=BST_AT_2S, cst_delay_ms=300,
                      params={"checks": {"cst_after_bst_ms": 100}})
    r = verdicts(sim)["reaction.cst_after_bst"]
    assert r.verdict == "FAIL" and r.measured in ("300 ms", "310 ms")


def test_cst_period_20ms_fails():
    sim, _, _ = short("ck_cst20", until=8000, scenario=BST_AT_2S, periods={"CST": 20})
    assert verdicts(sim)["period.CST"].verdict == "FAIL"


def test_current_not_falling_after_cst_fails():
    sim, _, _ = short("ck_cur", until=12000, stop_at_ms=5000, stop_current_delay_ms=300)
    r = verdicts(sim)["reaction.current_after_cst"]
    assert r.verdict == "FAIL" and int(r.measured.split()[0]) > 100
    sim, _, _ = short("ck_cur_ok", until=12000, stop_at_ms=5000)
    assert verdicts(sim)["reaction.current_after_cst"].verdict == "PASS"


def test_slow_ramp_after_bst_fails():
    sim, _, _ = short("ck_ramp", until=12000, scenario=BST_AT_2S, ramp_a_per_s=20.0)
    r = verdicts(sim)["reaction.current_ramp_after_bst"]
    assert r.verdict == "FAIL"


def test_missing_cem_after_dropped_bcl_fails():
    drop = [{"type": "drop", "message": "BCL", "stage": "charging", "after_ms": 1000, "duration_ms": 3000}]
    sim, _, _ = short("ck_cem", until=8000, scenario=drop, cem_enabled=False)
    assert verdicts(sim)["reaction.cem_BCL"].verdict == "FAIL"


def test_current_above_demand_fails():
    sim, _, _ = short("ck_offset", current_offset_a=2.0)
    r = verdicts(sim)["ccs.follows_bcl"]
    assert r.verdict == "FAIL" and r.measured.startswith("max excess +1.4")


def test_charger_ignoring_bsm_fault_fails():
    bsm = [{"type": "bsm", "stage": "charging", "after_ms": 1000, "bits": {"overtemp": 1}}]
    sim, _, _ = short("ck_bsm", until=6000, scenario=bsm, ignore_bsm=True)
    assert verdicts(sim)["reaction.stop_on_bsm_overtemp"].verdict == "FAIL"


def test_charger_ignoring_pause_fails():
    pause = [{"type": "pause", "stage": "charging", "after_ms": 1000, "duration_ms": 2000}]
    sim, _, _ = short("ck_pause", until=6000, scenario=pause, honor_pause=False)
    assert verdicts(sim)["reaction.pause"].verdict == "FAIL"


def test_charger_accepting_corrupt_transfer_fails():
    tp = [{"type": "tp", "message": "BRM", "stage": "recognition", "fault": "count", "value": -1}]
    sim, _, _ = short("ck_tp_lenient", until=3000, scenario=tp, strict_tp=False)
    assert verdicts(sim)["tp.BRM_count"].verdict == "FAIL"
    sim, _, _ = short("ck_tp_strict", until=3000, scenario=tp)
    r = verdicts(sim)["tp.BRM_count"]
    assert r.verdict == "PASS" and r.measured.startswith("charger Abort")


def test_unexpected_cem_fails():
    rec = Recorder()
    rec.on_rx(100.0, "CEM", bytes([0xFC, 0xF0, 0xC4, 0xFC]))      # BCL timeout, nothing dropped
    res = {r.name: r for r in evaluate(rec, BmsParams().resolved())}
    assert res["cem.unexpected"].verdict == "FAIL" and "BCL" in res["cem.unexpected"].measured


def test_not_run_when_nothing_seen():
    res = evaluate(Recorder(), BmsParams().resolved())
    assert {r.verdict for r in res} <= {"NOT RUN", "PASS"}
    assert overall([CheckResult("x", "NOT RUN")]) == "NOT RUN"
    assert overall(res + [CheckResult("y", "FAIL")]) == "FAIL"
