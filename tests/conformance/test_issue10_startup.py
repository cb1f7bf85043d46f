"""Issue 10 (session part), end to end on the SIL: the firmware process, the
plant and the CAN BMS simulator.  What is asserted is what a test engineer
sees: frames on the bus (simulated ms), output changes, the firmware's bench
texts and the records in its event log on the board's filesystem."""
from pathlib import Path

from host_tools import eventlog as HE
from host_tools.bms import codec

from .conftest import CEM, OUT_LAT, TICK, data, ms

BCL_410V_100A = bytes.fromhex("0410b80b02")      # 410.0 V, 100 A (raw 3000), CC
EV_STOP = HE.FW.EV_STOP
EV_INTRUSION = HE.FW.EV_INTRUSION


def _events(tmp_path):
    """Every record of the firmware's event log (the ``bench`` fixture keeps
    the board's filesystem under ``tmp_path``)."""
    files = sorted(Path(tmp_path).rglob("events.*"))
    assert files, "no event log written"
    recs, _ = HE.decode_files(files)
    return recs


# -- item 1 -----------------------------------------------------------------------
def test_issue10_item01_bcl_before_cro_aa_then_silent(bench):
    """The BMS answers with a BCL right after the charger's pre-charge, before
    the CRO slot carried 0xAA, and then goes silent: CRO 0xAA still goes out
    before CCS and the BCL timeout (1 s from CRO 0xAA) sends CEM BCL and opens
    K1/K2 (the defect: CCS, no CEM, no timeout for 8 s)."""
    b = bench(scenario=[{"type": "drop", "message": m, "at_ms": 0} for m in ("BCL", "BCS", "BSM")])
    t_chg = b.run_to_stage("charging", 15000)
    assert not [f for f in b.tx("CRO") if data(f) == b"\xaa"], "precondition: no CRO 0xAA yet"
    t_bcl = b.now
    b.send("BCL", BCL_410V_100A)
    b.run_for(8000)
    aa = [ms(f) for f in b.tx("CRO") if data(f) == b"\xaa"]
    assert aa and aa[0] > t_bcl
    ccs = b.tx("CCS")
    assert ccs and ms(ccs[0]) > aa[0]                 # CRO 0xAA first, then CCS
    cem = b.tx("CEM")
    assert cem and data(cem[0]) == CEM["BCL"]
    assert 1000 <= ms(cem[0]) - aa[0] <= 1000 + TICK
    t_open = b.first_change("k12", 0, after=ms(cem[0]))
    assert t_open is not None and t_open - ms(cem[0]) <= 1000
    assert b.stage_t("rehandshake", after=t_chg) is not None


# -- item 2 -----------------------------------------------------------------------
def test_issue10_item02_late_bcp_ignored_logged_limits_frozen(bench, tmp_path):
    """Mid-charge a BCP (TP) with 700 V / 400 A / 4.8 V limits arrives and the
    BCL demand goes to 650 V: the voltage set-point stays at the BCP limit of
    the parameter stage (350.4 V), the supervisor keeps comparing against it
    (S-4 "demand above max" is raised), and an intrusion record "bcp-late
    0x600" is in the bench text and the event log."""
    b = bench(scenario=[
        {"type": "inject", "message": "BCP", "stage": "charging", "after_ms": 3000, "count": 1,
         "fields": {"max_voltage_v": 700.0, "max_current_a": 400.0, "max_cell_voltage_v": 4.8}},
        {"type": "override", "message": "BCL", "stage": "charging", "after_ms": 3200,
         "fields": {"voltage_v": 650.0}},
    ])
    t_chg = b.run_to_stage("charging", 15000)
    b.run_for(9000)
    t_inj = min(ms(f) for f in b.rx("TPCM", after=t_chg + 2999))
    vs = [v for t, v in b.changes("v_set") if t > t_chg]
    assert vs and max(vs) <= 3504                                          # 350.4 V
    assert any("S-4" in s and "raise" in s for _, s in b.texts("safety"))
    assert not [t for t, s in b.texts("intrusion") if t < t_inj]          # none before
    # the BCP, then (issue 13, C-4) the 350 -> 650 V demand step of the
    # same attack: a demand jump outside physics (physics 0x1 = BCL voltage)
    assert [s for _, s in b.texts("intrusion")] == ["bcp-late 0x600", "physics 0x1"]
    recs = _events(tmp_path)
    ix = [r for r in recs if r["code"] == EV_INTRUSION]
    assert [(r["a"], r["b"]) for r in ix] == [(1, 0x600), (9, 1)]


# -- item 5 -----------------------------------------------------------------------
def test_issue10_item05_cml_sent_when_bro_aa_with_last_bcp_packet(bench):
    """The last BCP packet and BRO 0xAA reach the charger in the same receive
    pass: CML (and CTS) must still go out at least once before CRO (the
    defect: recognition -> parameter -> pre-charge in one pass, no CML; the
    BMS closes its relays never having seen the charger's limits)."""
    b = bench(params={"bro_delay_ms": 0},
              scenario=[{"type": "drop", "message": "BCP", "at_ms": 0}])
    t_aa = b.run_until_tx("CRM", 15000, pred=lambda d: d[0] == 0xAA)
    p = b.params
    bcp = codec.encode("BCP", {"max_cell_voltage_v": p.max_cell_voltage_v,
                               "max_current_a": p.max_current_a, "energy_kwh": p.energy_kwh,
                               "max_voltage_v": p.max_voltage_v, "max_temp_c": p.max_temp_c,
                               "soc_pct": b.pack.soc, "voltage_v": b.pack.terminal_voltage(0.0)})
    assert len(bcp) == 13
    b.send("TPCM", bytes([0x10, 13, 0, 2, 0xFF, 0x00, 0x06, 0x00]))        # RTS
    cts = b.run_until_tx("TPCM", 1000, after=ms(t_aa), pred=lambda d: d[0] == 0x11)
    b.send("TPDT", b"\x01" + bcp[:7])
    b.send("TPDT", b"\x02" + bcp[7:] + b"\xff")
    b.send("BRO", b"\xaa")                                                 # same step
    b.run_to_stage("charging", 15000)
    cml = b.tx("CML")
    cro = b.tx("CRO")
    assert b.rx("BRO") and ms(b.rx("BRO")[0]) >= ms(cts)
    assert cml and b.tx("CTS")
    assert ms(cml[0]) < ms(cro[0])
    assert ms(cro[0]) - ms(cml[0]) == TICK


# -- item 6 -----------------------------------------------------------------------
def test_issue10_item06_bcp_out_of_range_reported(bench, tmp_path):
    """BCP max current 0xFFFF (a discharge: out of range): CML once, CST
    "no energy transfer" + current error the tick after, no CEM, no
    re-handshake; the reason is in the bench text and the event log."""
    b = bench(scenario=[{"type": "override", "message": "BCP", "stage": "config",
                         "set_bytes": {"2": 0xFF, "3": 0xFF}}])
    b.run_to_stage("done", 20000)
    cml, cst = b.tx("CML"), b.tx("CST")
    assert len(cml) == 1 and ms(cst[0]) - ms(cml[0]) == TICK
    assert data(cst[0]) == bytes.fromhex("1040f0f1")
    assert not b.tx("CEM") and b.stage_t("rehandshake") is None
    assert [s for _, s in b.texts("stop")] == ["BCP out of range"]
    stops = [r for r in _events(tmp_path) if r["code"] == EV_STOP]
    assert [(r["a"], r["b"], r["text"]) for r in stops] == [(0x10, 0x40, "BCP out ")]


# -- item 8 -----------------------------------------------------------------------
def test_issue10_item08_battery_voltage_late_by_3s(bench):
    """The vehicle's contactors close slowly: the battery voltage is seen at
    the gun 3 s after BRO 0xAA.  The default 5 s check window waits, the
    pre-charge starts once it is seen and the charge goes on (the defect:
    CST "battery voltage mismatch" after 1 s)."""
    b = bench()
    b.run_to_stage("parameter", 15000)
    b.sim.override("v_outside", 0)                   # K5/K6 still open
    t_pre = b.run_to_stage("precharge", 15000)
    b.run_until(lambda: b.now >= t_pre + 3000, 4000)
    b.sim.release("v_outside")
    b.run_to_stage("charging", 10000)
    b.run_for(1000)
    assert not b.tx("CST")
    t_on = b.first_change("pwr_en", 1, after=t_pre)
    assert t_on - OUT_LAT >= t_pre + 3000
    aa = [ms(f) for f in b.tx("CRO") if data(f) == b"\xaa"]
    t_bro = ms(b.first("BRO", sender="B", pred=lambda d: d == b"\xaa"))
    assert aa and aa[0] - t_bro > 3000
    assert b.tx("CCS")
