"""The BMS's side of a whole session against the scripted charger: bytes, ids, periods, stages.

Simulated time, lock-step 5 ms, python-can ``virtual`` bus."""
import struct

import pytest

from host_tools.bms import BmsParams, BmsSimulator
from tests.test_bms_support import FAST, ScriptedCharger, frames, make_buses, session

@pytest.fixture(scope="module")
def normal():
    return session("seq_normal")


def periods(ts):
    return sorted({b - a for a, b in zip(ts, ts[1:])})


def test_session_completes_with_soc_target(normal):
    sim, ch, log = normal
    assert sim.done and sim.stage == "done"
    assert sim.stop_reason.startswith("SOC target reached")
    assert sim.pack.soc == pytest.approx(51.0, abs=0.05)
    assert [s for _, k, i in sim.rec.events if k == "stage" for s in [i["stage"]]] == [
        "wait_chm", "handshake", "recognition", "config", "charging", "stopping", "statistics", "done"]


def test_bhm_bytes_and_period(normal):
    sim, _, log = normal
    bhm = frames(log, 0x182756F4)
    assert bhm and all(d == struct.pack("<H", int(round(sim.p.max_voltage_v * 10))) for _, d in bhm)
    assert periods([t for t, _ in bhm]) == [250]


def test_brm_by_rts_cts_with_vin(normal):
    _, ch, log = normal
    rts = [d for _, d in frames(log, 0x1CEC56F4) if d[5:8] == b"\x00\x02\x00"]
    assert rts[0] == bytes.fromhex("10310007FF000200")
    dts = [d for _, d in frames(log, 0x1CEB56F4)][:7]
    payload = b"".join(d[1:] for d in dts)[:49]
    assert payload[:3] == b"\x01\x01\x00" and payload[3] == 3          # V1.1, LFP
    assert struct.unpack_from("<HH", payload, 4) == (200, 640)         # 20.0 Ah, 64.0 V
    assert payload[24:41] == b"LTESTVIN123456789"
    assert ch.msgs["BRM"] == payload


def test_bcp_and_bcs_rts_match_spec_examples(normal):
    _, ch, log = normal
    rts = [d for _, d in frames(log, 0x1CEC56F4)]
    assert bytes.fromhex("100D0002FF000600") in rts
    assert bytes.fromhex("10090002FF001100") in rts
    bcp = ch.msgs["BCP"]
    assert struct.unpack_from("<HHHHBHH", bcp)[:5] == (365, 4000 - 600, 13, 730, 55 + 50)   # 3.65 V, 60 A, 1.3 kWh, 73.0 V, 55 C


def test_bro_00_then_aa_every_250ms(normal):
    sim, _, log = normal
    bro = frames(log, 0x100956F4)
    vals = [d for _, d in bro]
    first_aa = vals.index(b"\xaa")
    assert first_aa >= 1 and set(vals[:first_aa]) == {b"\x00"} and set(vals[first_aa:]) == {b"\xaa"}
    assert periods([t for t, _ in bro]) == [250]
    assert bro[first_aa][0] - bro[0][0] >= sim.p.bro_delay_ms


def test_charging_messages_periods_and_content(normal):
    sim, _, log = normal
    bcl = frames(log, 0x181056F4)
    assert periods([t for t, _ in bcl]) == [50]
    v, raw_i, mode = struct.unpack("<HHB", bcl[5][1])
    # CC demand defaults to 98 % of the 60 A BCP limit (a demand above 99.5 % is risk S-1)
    assert v == 720 and mode == 2 and 4000 - raw_i == 588               # 72.0 V demand, CC at 58.8 A
    bsm = frames(log, 0x181356F4)
    assert periods([t for t, _ in bsm]) == [250]
    assert all(len(d) == 7 and d[6] == 0xD0 and d[5] == 0x00 for _, d in bsm)   # permit 01, reserved 11
    bcs_rts = [t for t, d in frames(log, 0x1CEC56F4) if d[5:8] == b"\x00\x11\x00"]
    assert periods(bcs_rts) == [250]


def test_bst_soc_reached_every_10ms_then_bsd(normal):
    sim, ch, log = normal
    bst = frames(log, 0x101956F4)
    assert bst and all(d == bytes([0x01, 0x00, 0x00, 0xF0]) for _, d in bst)
    assert set(periods([t for t, _ in bst])) <= {10}
    bsd = frames(log, 0x181C56F4)
    assert bsd and bsd[0][0] > bst[0][0]
    soc, vmin, vmax, tmin, tmax = struct.unpack("<BHHBB", bsd[0][1])
    assert soc == 51 and 300 < vmin <= vmax < 365 and 70 <= tmin <= tmax < 90


def test_all_checks_pass_against_a_correct_charger(normal):
    sim, _, _ = normal
    res = {r.name: r.verdict for r in sim.report()}
    assert "FAIL" not in res.values(), [str(r) for r in sim.report() if r.verdict == "FAIL"]
    for name in ("period.CCS", "period.CRM", "period.CML", "period.CST", "content.CRM", "content.CRO",
                 "reaction.cst_after_bst", "reaction.current_ramp_after_bst", "session.statistics"):
        assert res[name] == "PASS", name


def test_pack_driven_by_ccs_current(normal):
    sim, ch, _ = normal
    assert sim.pack.charged_ah == pytest.approx(0.2, rel=0.05)    # 1 % of 20 Ah


def test_charger_initiated_stop_gets_bst_reason_charger():
    sim, ch, log = session("seq_cst", until=20000, stop_at_ms=6000)
    bst = frames(log, 0x101956F4)
    assert bst and bst[0][1][0] == 0x40                            # "charger stopped"
    assert sim.done and sim.stop_reason.startswith("charger stopped")


def test_ccs_timeout_sends_bem_ccs():
    b, c = make_buses("seq_ccs_to")
    sim = BmsSimulator(b, BmsParams(**FAST))
    ch = ScriptedCharger(c)
    now = 0
    while sim.stage != "charging":
        ch.poll(now)
        sim.poll(now)
        now += 5
    t_ch = now
    while now < t_ch + 3000:                 # the charger goes silent
        sim.poll(now)
        now += 5
    bem = []
    while (m := c.recv(timeout=0)) is not None:
        if m.arbitration_id == 0x081E56F4:
            bem.append(bytes(m.data))
    assert bem and bem[0] == bytes([0xF0, 0xF0, 0xF1, 0xFC])          # SPN3905 CCS timeout
    assert sim.stage == "error" and "CCS" in sim.stop_reason
    assert any(r.name == "session.no_bem" and r.verdict == "FAIL" for r in sim.report())
    b.shutdown()
    c.shutdown()


def test_no_crm_after_chm_gives_bem_crm_after_30s():
    b, c = make_buses("seq_crm_to")
    sim = BmsSimulator(b, BmsParams(**FAST))
    import can
    chm = can.Message(arbitration_id=0x1826F456, data=b"\x01\x01\x00", is_extended_id=True)
    for now in range(0, 30100, 10):
        if now % 250 == 0:
            c.send(chm)
        sim.poll(now)
        if sim.stage == "error":
            break
    assert sim.stage == "error" and now == 30000
    assert "CRM" in sim.stop_reason
    b.shutdown()
    c.shutdown()
