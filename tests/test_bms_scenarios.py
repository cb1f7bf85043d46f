"""Every scenario action type, on the bus, in simulated time; and the checked-in scenario files."""
import struct

import pytest

from host_tools.bms import Scenario
from host_tools.bms.scenario import builtin, builtin_names
from tests.test_bms_support import frames, session, verdicts

BCL, BSM, BRO, BCP, BHM, BST, BEM = 0x181056F4, 0x181356F4, 0x100956F4, 0x1C0656F4, 0x182756F4, 0x101956F4, 0x081E56F4
LONG = {"target_soc": 60.0}                     # keeps charging for the whole test window


def charging_start(sim):
    return sim.stage_entry["charging"]


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_scenarios_load(name):
    sc = Scenario.load(builtin(name))
    assert sc.name == name and sc.description


def test_builtin_set_covers_the_required_examples():
    assert {"normal", "bst_mid_charge", "bcl_timeout", "brm_tp_missing_packet", "bsm_pause_resume",
            "bsm_overtemp"} <= set(builtin_names())


@pytest.mark.parametrize("bad,msg", [
    ({"action": [{"type": "explode", "at_ms": 1}]}, "unknown type"),
    ({"action": [{"type": "drop", "message": "XYZ", "at_ms": 1}]}, "unknown message"),
    ({"action": [{"type": "drop", "message": "BCL"}]}, "at_ms"),
    ({"action": [{"type": "override", "message": "BCL", "at_ms": 1, "fields": {"volts": 1}}]}, "no field"),
    ({"action": [{"type": "tp", "message": "BCL", "at_ms": 1, "fault": "missing"}]}, "not a multi-packet"),
    ({"action": [{"type": "drop", "message": "BCL", "at_ms": 1, "colour": "red"}]}, "unknown keys"),
    ({"bogus": 1}, "unknown top-level"),
])
def test_scenario_validation_names_the_problem(bad, msg):
    with pytest.raises(ValueError, match=msg):
        Scenario.from_dict(bad)


def test_drop_bcl_window_and_cem_reaction():
    sim, ch, log = session("sc_drop", LONG, until=12000, scenario=[
        {"type": "drop", "message": "BCL", "stage": "charging", "after_ms": 2000, "duration_ms": 2500}])
    t0 = charging_start(sim) + 2000
    ts = [t for t, _ in frames(log, BCL)]
    assert not [t for t in ts if t0 <= t < t0 + 2500]
    assert [t for t in ts if t >= t0 + 2500]                   # resumes after re-handshake
    r = verdicts(sim)["reaction.cem_BCL"]
    assert r.verdict == "PASS" and abs(float(r.measured.split()[0]) - 1000) <= 10
    assert sim.reconnects == 1


def test_delay_shifts_frames():
    sim, ch, log = session("sc_delay", LONG, until=6000, stop_when_done=False, scenario=[
        {"type": "delay", "message": "BCL", "stage": "charging", "after_ms": 1000, "duration_ms": 1000,
         "delay_ms": 400}])
    t0 = charging_start(sim) + 1000
    ts = [t for t, _ in frames(log, BCL)]
    assert not [t for t in ts if t0 <= t < t0 + 400]           # nothing arrives during the first 400 ms
    # 20 delayed frames (sent t0+400 .. t0+1350) plus the 8 on-time ones from t0+1000 on
    assert len([t for t in ts if t0 <= t < t0 + 1400]) == 28
    assert verdicts(sim)["cem.unexpected"].verdict == "PASS"


def test_override_fields_raw_and_set_bytes():
    sim, ch, log = session("sc_override", until=4000, stop_when_done=False, scenario=[
        {"type": "override", "message": "BCP", "stage": "config", "fields": {"max_voltage_v": 1500.0}},
        {"type": "override", "message": "BHM", "at_ms": 0, "set_bytes": {"1": 0x12}},
        {"type": "override", "message": "BRO", "stage": "config", "raw": "55"}])
    assert struct.unpack_from("<H", ch.msgs["BCP"], 6)[0] == 15000
    assert all(d[1] == 0x12 for _, d in frames(log, BHM))
    assert {d for _, d in frames(log, BRO)} == {b"\x55"}


def test_malformed_dlc_and_garbage():
    sim, ch, log = session("sc_malformed", LONG, until=6000, stop_when_done=False, scenario=[
        {"type": "malformed", "message": "BCL", "stage": "charging", "after_ms": 500, "count": 3, "dlc": 3},
        {"type": "malformed", "message": "BCL", "stage": "charging", "after_ms": 1500, "count": 2, "garbage": True}])
    bcl = frames(log, BCL)
    lens = [len(d) for _, d in bcl]
    assert lens.count(3) == 3 and lens.count(5) > 10
    t0 = charging_start(sim)
    near = {t - t0: d for t, d in bcl if 1450 <= t - t0 <= 1600}
    assert near[1500] != near[1450] and near[1550] != near[1450] and near[1600][4] in (1, 2)
    assert len(near[1500]) == 5


def test_inject_out_of_order_bro():
    sim, ch, log = session("sc_inject", until=3000, stop_when_done=False, scenario=[
        {"type": "inject", "message": "BRO", "stage": "handshake", "after_ms": 100, "count": 2, "period_ms": 250,
         "fields": {"value": 0xAA}}])
    bro = frames(log, BRO)
    first_brm = min(t for t, i, d in log if i == 0x1CEC56F4)
    early = [t for t, d in bro if t < first_brm]
    assert len(early) == 2 and early[1] - early[0] == 250 and all(d == b"\xaa" for t, d in bro if t < first_brm)


def test_tp_fault_missing_packet_is_rerequested():
    sim, ch, log = session("sc_tp", until=4000, stop_when_done=False, scenario=[
        {"type": "tp", "message": "BRM", "stage": "recognition", "fault": "missing", "packet": 3}])
    rec = sim.rec.transfers[0]
    assert rec.fault.kind == "missing" and rec.result == "ok"
    assert [c[1:] for c in rec.cts] == [(7, 1), (5, 3)]        # the charger asks again from packet 3
    assert verdicts(sim)["tp.BRM_missing"].verdict == "PASS"
    assert ch.msgs["BRM"][24:41] == b"LTESTVIN123456789"


def test_tp_fault_abort_then_retry():
    sim, ch, log = session("sc_tp_abort", until=4000, stop_when_done=False, scenario=[
        {"type": "tp", "message": "BCP", "stage": "config", "fault": "abort", "packet": 1}])
    bcp = [r for r in sim.rec.transfers if r.pgn == 0x0600]
    assert bcp[0].result == "abort_sent" and bcp[1].result == "ok"
    assert sim.stage == "charging"


def test_bsm_fault_bits_and_stop_reaction():
    sim, ch, log = session("sc_bsm", LONG, until=8000, scenario=[
        {"type": "bsm", "stage": "charging", "after_ms": 1000, "bits": {"overtemp": 1, "insulation": 2}}])
    t0 = charging_start(sim) + 1000
    after = [d for t, d in frames(log, BSM) if t >= t0]
    assert after[0][5] & 0xC0 == 0x40 and after[0][6] & 0x03 == 0x02
    r = verdicts(sim)["reaction.stop_on_bsm_overtemp"]
    assert r.verdict == "PASS"
    assert sim.stop_reason.startswith("charger stopped")


def test_pause_and_resume_permit_bit():
    sim, ch, log = session("sc_pause", LONG, until=9000, stop_when_done=False, scenario=[
        {"type": "pause", "stage": "charging", "after_ms": 1000, "duration_ms": 2000}])
    t0 = charging_start(sim) + 1000
    permit = [(t, (d[6] >> 4) & 3) for t, d in frames(log, BSM)]
    assert {p for t, p in permit if t0 <= t < t0 + 2000} == {0}
    assert {p for t, p in permit if t >= t0 + 2000} == {1} and {p for t, p in permit if t < t0} == {1}
    v = verdicts(sim)
    assert v["reaction.pause"].verdict == "PASS" and v["reaction.resume"].verdict == "PASS"


def test_bst_at_any_moment_with_named_bits():
    sim, ch, log = session("sc_bst", LONG, until=8000, scenario=[
        {"type": "bst", "stage": "charging", "after_ms": 700, "fault": ["relay", "other"], "error": "voltage"}])
    bst = frames(log, BST)
    assert bst[0][0] == charging_start(sim) + 700
    assert bst[0][1] == bytes([0x00, 0x00, 0x44, 0xF4])
    assert verdicts(sim)["reaction.cst_after_bst"].verdict == "PASS"
    assert sim.done


def test_ignore_ccs_makes_the_bms_time_out():
    sim, ch, log = session("sc_ignore", LONG, until=6000, stop_when_done=False, scenario=[
        {"type": "ignore", "message": "CCS", "stage": "charging", "after_ms": 500}])
    bem = frames(log, BEM)
    assert bem and bem[0][1] == bytes([0xF0, 0xF0, 0xF1, 0xFC])
    assert bem[0][0] == charging_start(sim) + 500 - 15 + 1000 or abs(bem[0][0] - (charging_start(sim) + 1500)) <= 60
    assert verdicts(sim)["session.no_bem"].verdict == "PASS"        # induced by the scenario


def test_pack_action_forces_overtemperature_stop():
    sim, ch, log = session("sc_pack", LONG, until=8000, scenario=[
        {"type": "pack", "stage": "charging", "after_ms": 500, "temp_c": 80}])
    bst = frames(log, BST)
    assert bst and bst[0][1] == bytes([0x00, 0x00, 0x01, 0xF0])      # battery over-temperature
    assert sim.stop_reason.startswith("battery over-temperature")


@pytest.mark.parametrize("name", ["bcl_timeout", "bsm_pause_resume"])
def test_builtin_scenario_runs_clean_against_a_correct_charger(name):
    sim, ch, log = session("sc_" + name, LONG, until=16000, stop_when_done=False, step_ms=10,
                           scenario=Scenario.load(builtin(name)))
    assert not [str(r) for r in sim.report() if r.verdict == "FAIL"]
