"""Whole sessions on the 32-bit QEMU target (the product image: firmware
frozen, the 105,632-byte heap of a PYBv1.1), driven by the same harness,
plant and CAN BMS simulator as the unix SIL board.

What a test engineer would check on a new board: it boots, runs handshake
-> charging -> end against the BMS simulator with every charger message at
its period, trips in time, fails safe, refuses a bad configuration, keeps
its records across a reboot -- and, since it is the same firmware, puts the
same bytes on the bus at the same simulated milliseconds as the unix port.
"""
import json

import pytest

from host_tools.bms.battery import BatteryPack
from host_tools.bms.params import BmsParams
from host_tools.bms.simulator import BmsSimulator
from host_tools.sil import Plant, Simulation

import qemu_support  # noqa: F401  (sys.path: the repository root)
from safety_sil_support import Bench

ID = {"CHM": 0x1826F456, "CRM": 0x1801F456, "CML": 0x1808F456, "CRO": 0x100AF456,
      "CCS": 0x1812F456, "CST": 0x101AF456, "CSD": 0x181DF456, "CTS": 0x1807F456}


def _session(target, tmp_path, until_done=True, max_ms=60_000):
    """Plug -> unlock with the BMS simulator: a 20 Ah pack, 80 -> 81 %."""
    p = BmsParams(capacity_ah=20, cells=96, soc=80, target_soc=81).resolved()
    pack = BatteryPack(p.chemistry, p.capacity_ah, p.cells, p.soc)
    sim = Simulation(plant=Plant(pack), state_dir=str(tmp_path / target), target=target)
    frames = []
    sim.hub.listeners.append(lambda m: frames.append(
        (round(m.timestamp * 1000), m.arbitration_id, bytes(m.data))))
    bms = BmsSimulator(sim.bus(), p, pack=pack, drive_pack=False)
    sim.step_hooks.append(bms.poll)
    try:
        sim.run_until(lambda: bms.done and sim.outputs["lock"] == 0, max_ms)
    finally:
        sim.close()
    return sim, bms, frames


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    d = tmp_path_factory.mktemp("sessions")
    return {t: _session(t, d) for t in ("qemu", "unix")}


def _times(frames, name):
    return [t for t, cid, _ in frames if cid == ID[name]]


def test_full_session_on_the_target(sessions):
    sim, bms, frames = sessions["qemu"]
    texts = [t for _, t in sim.texts]
    assert any(t.startswith("boot qemu-m3 config=ok") for t in texts), texts[:5]
    stages = [t.split()[1] for t in texts if t.startswith("stage ")]
    for st in ("handshake", "insulation", "recognition", "parameter", "precharge",
               "charging", "stopping", "statistics", "done"):
        assert st in stages, stages
    assert not [t for t in texts if t.startswith("fail-safe")]
    assert bms.done
    summary = bms.summary()
    assert summary["verdict"] == "PASS", [r for r in bms.report() if r.verdict == "FAIL"]
    # every periodic charger message at its period, to the simulated ms
    for name, period in (("CHM", 250), ("CRM", 250), ("CML", 250), ("CRO", 250),
                         ("CCS", 50), ("CSD", 250)):
        ts = _times(frames, name)
        assert len(ts) >= 2, name
        assert {b - a for a, b in zip(ts, ts[1:])} == {period}, (name, ts[:10])
    cst = _times(frames, "CST")
    assert cst and {b - a for a, b in zip(cst, cst[1:])} == {10}
    # charged: K1/K2 closed while current flowed, everything safe at the end
    assert any(c.name == "k12" and c.value == 1 for c in sim.output_log)
    assert sim.outputs["k12"] == 0 and sim.outputs["pwr_en"] == 0 and sim.outputs["lock"] == 0


def test_target_puts_the_same_bytes_on_the_bus_as_the_unix_port(sessions):
    """The 32-bit build behaves like the 64-bit one: the same frames (id,
    data) at the same simulated milliseconds, the same output changes."""
    q, u = sessions["qemu"], sessions["unix"]
    assert q[2] == u[2], next((i, a, b) for i, (a, b) in enumerate(zip(q[2], u[2])) if a != b)
    assert [(c.t_ms, c.name, c.value) for c in q[0].output_log] == \
        [(c.t_ms, c.name, c.value) for c in u[0].output_log]


def test_estop_trip_on_the_target(tmp_path):
    """H-3 mid-charge with the current stuck at 200 A: power stage off at
    the next protection tick, K1/K2 commanded open in time for the contacts
    to be apart (physically, in the plant) within 100 ms, CST fault."""
    b = Bench(tmp_path / "state", config={"lockout.enable": 0}, target="qemu")
    try:
        t0, k_cmd, k_phys = b.stuck_estop()
        p_off = b.out_change("pwr_en", 0, t0)
        assert p_off is not None and p_off - t0 <= 5
        assert k_cmd is not None and 70 <= k_cmd - t0 <= 75, k_cmd
        assert k_phys is not None and k_phys - t0 <= 100, k_phys
        cst = [(t, d) for t, cid, d in b.frames if cid == ID["CST"] and t >= t0]
        assert cst and cst[0][0] - t0 <= 20 and cst[0][1][0] & 0x30 == 0x10, cst[:1]
    finally:
        b.close()


def test_exception_fails_safe_on_the_target(tmp_path):
    """H-9 on the target: an exception in the session task mid-charge drives
    every output safe at once and the app keeps sending CST fault."""
    b = Bench(tmp_path / "state", config={"lockout.enable": 0}, target="qemu")
    try:
        b.wait_charging()
        assert b.run_until(lambda: b.plant.i > 95, 10000)
        t0 = b.now
        b.sim.inject_exception()
        b.run(300)
        assert [t for t, s in b.sim.texts if s.startswith("fail-safe exception: RuntimeError")]
        for n, v in (("pwr_en", 0), ("k12", 0), ("k34", 0), ("bleed", 1), ("i_set", 0)):
            assert b.sim.outputs[n] == v, (n, b.sim.outputs)
            when = b.out_change(n, v, t0)
            assert when is not None and when - t0 <= 11, (n, when, t0)
        cst = [t for t, cid, _ in b.frames if cid == ID["CST"] and t > t0]
        assert len(cst) >= 25 and {b_ - a for a, b_ in zip(cst, cst[1:])} == {10}
    finally:
        b.close()


def test_bad_configuration_refuses_to_charge_on_the_target(tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"rating.max_v": 99999}))
    p = BmsParams(capacity_ah=20, cells=96, soc=50, target_soc=60).resolved()
    pack = BatteryPack(p.chemistry, p.capacity_ah, p.cells, p.soc)
    sim = Simulation(plant=Plant(pack), config=str(cfg), target="qemu")
    bms = BmsSimulator(sim.bus(), p, pack=pack, drive_pack=False)
    sim.step_hooks.append(bms.poll)
    try:
        sim.run_for(15_000)
    finally:
        sim.close()
    texts = [t for _, t in sim.texts]
    assert any(t.startswith("boot qemu-m3 config=BAD") for t in texts), texts[:6]
    assert any("rating.max_v" in t for t in texts if t.startswith("config"))
    assert not any(c.name in ("k12", "pwr_en") and c.value for c in sim.output_log)
