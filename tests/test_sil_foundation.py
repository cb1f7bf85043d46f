"""The foundation: the firmware boots on the real micropython binary on the
SIL board, keeps its periods to the simulated millisecond, is repeatable
bit for bit, fails safe on an exception, and its bus is a python-can bus
that other processes can join in real time."""
import os
import subprocess
import sys
import time
from pathlib import Path

import can
import pytest

from host_tools.bms.battery import BatteryPack
from host_tools.bms.params import BmsParams
from host_tools.bms.simulator import BmsSimulator
from host_tools.sil import Plant, RealtimeBench, Simulation

ROOT = Path(__file__).resolve().parent.parent
CCS_ID = 0x1812F456
CHM_ID = 0x1826F456


def _bench(tmp_path, soc=50.0, target=95.0, **kw):
    p = BmsParams(soc=soc, target_soc=target, capacity_ah=100, cells=96).resolved()
    pack = BatteryPack(p.chemistry, p.capacity_ah, p.cells, p.soc)
    sim = Simulation(plant=Plant(pack), state_dir=str(tmp_path / "state"), **kw)
    bms = BmsSimulator(sim.bus(), p, pack=pack, drive_pack=False)
    sim.step_hooks.append(bms.poll)
    return sim, bms


def test_boots_and_ccs_keeps_its_period_to_the_ms_for_60_s(tmp_path):
    sim, bms = _bench(tmp_path)
    listener_bus = sim.bus()
    reader = can.BufferedReader()
    notifier = can.Notifier(listener_bus, [reader], timeout=0.05)
    try:
        sim.run_for(60_000)
    finally:
        sim.close()
        notifier.stop()
    assert any(t.startswith("boot unix-sil config=ok") for _, t in sim.texts)
    frames = []
    while (m := reader.get_message(0)) is not None:
        frames.append(m)
    ccs = [round(m.timestamp * 1000) for m in frames if m.arbitration_id == CCS_ID]
    assert len(ccs) > 1000, "charging for most of the minute"
    periods = {b - a for a, b in zip(ccs, ccs[1:])}
    assert periods == {50}, periods
    chm = [round(m.timestamp * 1000) for m in frames if m.arbitration_id == CHM_ID]
    assert chm and {b - a for a, b in zip(chm, chm[1:])} <= {250}
    assert any("stage charging" in t for _, t in sim.texts)


def test_runs_are_bit_for_bit_repeatable(tmp_path):
    logs = []
    for k in range(2):
        sim, _ = _bench(tmp_path / str(k))
        got = []
        sim.hub.listeners.append(
            lambda m: got.append((round(m.timestamp * 1000), m.arbitration_id, bytes(m.data))))
        sim.run_for(8_000)
        sim.close()
        logs.append((got, [(c.t_ms, c.name, c.value) for c in sim.output_log]))
    assert len(logs[0][0]) > 300
    assert logs[0] == logs[1]


def test_exception_in_a_task_leaves_every_output_safe(tmp_path):
    sim, _ = _bench(tmp_path)
    got = []
    sim.hub.listeners.append(got.append)
    try:
        assert sim.run_until(lambda: sim.outputs["pwr_en"] == 1 and sim.outputs["k12"] == 1
                             and sim.plant.i > 20, 30_000), "charging"
        t0 = sim.now_ms
        sim.inject_exception()
        sim.run_for(300)
        assert sim.outputs["pwr_en"] == 0
        assert sim.outputs["k12"] == 0
        assert sim.outputs["k34"] == 0
        assert sim.outputs["v_set"] == 0 and sim.outputs["i_set"] == 0
        assert sim.outputs["bleed"] == 1
        off = sim.first_change("pwr_en", 0, t0)
        assert off is not None and off - t0 <= 20
        assert any("fail-safe" in t and "injected fault" in t for _, t in sim.texts)
        # ... and tells the vehicle: CST "fault / other" every 10 ms
        cst = [(round(m.timestamp * 1000), bytes(m.data)) for m in got if m.arbitration_id == 0x101AF456]
        assert cst and cst[0][0] - t0 <= 20, cst[:2]
        assert cst[0][1] == bytes.fromhex("1000f4f0"), cst[0][1].hex()
        assert {b[0] - a[0] for a, b in zip(cst, cst[1:])} == {10}
        # the firmware keeps running (protection, CAN, console) but never re-energises
        sim.run_for(3_000)
        assert sim.outputs["pwr_en"] == 0 and sim.outputs["k12"] == 0
    finally:
        sim.close()


def test_bad_configuration_refuses_to_charge(tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text('{"rating.max_i": 999999, "no.such.key": 1}')
    sim, _ = _bench(tmp_path, config=str(cfg))
    try:
        sim.run_for(5_000)
        texts = " | ".join(t for _, t in sim.texts)
        assert "config=BAD" in texts
        assert "rating.max_i" in texts and "no.such.key" in texts
        assert all(c.value == 0 for c in sim.output_log if c.name in ("pwr_en", "k12", "k34"))
        assert not any(t.startswith("stage charging") for _, t in sim.texts)
    finally:
        sim.close()


EXTERNAL = r'''
import sys, time, can
bus = can.Bus(interface="sil", channel=sys.argv[1])
ids = {}
end = time.time() + float(sys.argv[2])
while time.time() < end:
    m = bus.recv(0.1)
    if m is not None:
        ids[m.arbitration_id] = ids.get(m.arbitration_id, 0) + 1
bus.shutdown()
print(" ".join("%08X:%d" % kv for kv in sorted(ids.items())))
'''


def test_realtime_mode_an_external_python_can_program_joins_the_bus(tmp_path):
    """Real-time mode: the firmware on wall-clock time; a separate process
    using nothing but python-can (interface "sil") sees the bus, including
    the frames of our BMS simulator running as yet another client."""
    p = BmsParams(soc=50, capacity_ah=100, cells=96).resolved()
    pack = BatteryPack(p.chemistry, p.capacity_ah, p.cells, p.soc)
    bench = RealtimeBench(plant=Plant(pack), state_dir=str(tmp_path / "rt"))
    try:
        chan = "127.0.0.1:%d" % bench.port
        bms = BmsSimulator(can.Bus(interface="sil", channel=chan), p, pack=pack, drive_pack=False)
        bench.hooks.append(bms.poll)
        script = tmp_path / "ext.py"
        script.write_text(EXTERNAL)
        out = subprocess.run([sys.executable, str(script), chan, "4"], capture_output=True,
                             text=True, timeout=30, cwd=str(ROOT))
        assert out.returncode == 0, out.stderr
        seen = dict(x.split(":") for x in out.stdout.split())
        assert int(seen.get("%08X" % CHM_ID, 0)) >= 4, out.stdout      # firmware: CHM every 250 ms
        assert int(seen.get("182756F4", 0)) >= 4, out.stdout           # BMS simulator: BHM
    finally:
        bench.close()


def test_fail_safe_during_a_finished_trip_holds_the_outputs_still(tmp_path):
    """E-stop trip, then an exception: the outputs settle in the fail-safe
    state and stay there (no actuator chatter, bleeder on)."""
    sim, _ = _bench(tmp_path)
    try:
        assert sim.run_until(lambda: sim.outputs["k12"] == 1 and sim.plant.i > 20, 30_000)
        sim.override("estop", 1)
        sim.run_for(1_500)                         # trip sequence finished
        t0 = sim.now_ms
        sim.inject_exception()
        sim.run_for(1_000)
        changes = [c for c in sim.output_log if c.t_ms > t0 + 20]
        assert changes == [], changes[:6]
        assert sim.outputs["bleed"] == 1 and sim.outputs["pwr_en"] == 0 and sim.outputs["k12"] == 0
    finally:
        sim.close()
