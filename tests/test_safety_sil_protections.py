"""Hard protections H-1..H-8 (+ H-10), E-stop and the H-9 fail-safe in the SIL.

Each cause is injected mid-charge as the charger would see it (a plant
measurement override) with the lock-step at 1 ms, at an odd millisecond,
i.e. between two protection ticks (sched.protect_ms, 5 ms by default).  Measured from the injection, in
simulated ms: the firmware's ``pwr_en = 0``, its K1/K2 open command, the
plant's K1/K2 physically open (15 ms actuation), and the physical gun
voltage below 60 V (the plant's own value: overrides change only what the
firmware measures).  Limits: 10 ms to power off for H-1, 100 ms to power
off and to K1/K2 open for every protection, < 60 V within 1 s.
"""
from __future__ import annotations

import pytest

from host_tools.sil.plant import PlantParams
from safety_sil_support import Bench

CST_ID = 0x101AF456
F_ESTOP, F_CONNECTOR, F_NO_ENERGY, F_OTHER = 0x100, 0x004, 0x040, 0x400
E_CURRENT, E_VOLTAGE = 0x01, 0x04

# name, input, value, release input once the power stage is off?, CST fault, CST error
CASES = [
    ("H-1", "v_inside", 8300, False, F_OTHER, E_VOLTAGE),      # 830 V > 110 % of 750 V
    ("H-2", "i_out", 2500, True, F_OTHER, E_CURRENT),          # 250 A > 120 % of 200 A
    ("H-3", "estop", 1, False, F_ESTOP, 0),                    # E-stop pressed
    ("H-4", "insulation_kohm", 50, False, F_OTHER, 0),         # 50 kOhm < 100 ohm/V * 750 V
    ("H-5", "cc1_mv", 6000, False, F_CONNECTOR, 0),            # CC1 6 V: gun link lost
    ("H-6", "t_gun_pos", 950, False, F_CONNECTOR, 0),          # gun 95 degC > 90
    ("H-7", "k12_fb", 0, False, F_OTHER, 0),                   # K1/K2 feedback drops while closed
    ("H-8", "leakage_ma", 40, False, F_OTHER, 0),              # 40 mA > 30 mA
    ("H-10", "mains_ok", 0, False, F_NO_ENERGY, 0),            # AC mains lost
]
LATENCY = {}
PROTECT_MS = 5   # sched.protect_ms default (firmware/rt/scheduler.py)


@pytest.fixture(scope="module", autouse=True)
def latency_table():
    """Print the measured latencies at the end of the module (pytest -s)."""
    yield
    if LATENCY:
        print("\n| cause | -> pwr_en=0 | -> K1/K2 open (cmd) | K1/K2 physically open | -> V < 60 V |")
        for k, v in LATENCY.items():
            print("| %s | %s |" % (k, " | ".join("-" if x is None else str(x) for x in v)))


def _run_cause(tmp_path, name, inp, value, release_when_off):
    b = Bench(tmp_path / "state", config={"lockout.enable": 0})
    b.wait_charging()
    assert b.run_until(lambda: b.plant.i > 95, 10000), b.plant.i     # at full current (98 A)
    b.run(200)
    t0 = b.fine_steps(1)
    b.sim.override(inp, value)
    released = []

    def hook(now):
        if release_when_off and not released and b.sim.outputs["pwr_en"] == 0:
            b.sim.release(inp)
            released.append(now)

    b.sim.step_hooks.append(hook)
    b.run_until(lambda: b.v_below(60.0, t0) is not None and b.now - t0 >= 150, 1500)
    b.sim.step_ms = 10
    b.run(200)
    return b, t0


@pytest.mark.parametrize("name,inp,value,release,fault,error", CASES, ids=[c[0] for c in CASES])
def test_hard_protection_latency(tmp_path, name, inp, value, release, fault, error):
    b, t0 = _run_cause(tmp_path, name, inp, value, release)
    try:
        trips = b.safety("trip")
        assert trips and trips[0][2].startswith(name + " "), b.safety()
        p_off = b.out_change("pwr_en", 0, t0)
        k_open = b.out_change("k12", 0, t0)
        k_phys = b.plant_k12_open(t0)
        v60 = b.v_below(60.0, t0)
        assert None not in (p_off, k_open, k_phys, v60), (p_off, k_open, k_phys, v60)
        lat = (p_off - t0, k_open - t0, k_phys - t0, v60 - t0)
        LATENCY[name] = lat
        print("\n%s: pwr_en=0 +%d ms, K1/K2 open cmd +%d ms (physically +%d), < 60 V +%d ms"
              % ((name,) + lat))
        if name == "H-1":
            assert lat[0] <= 10
        assert lat[0] <= 100 and lat[1] <= 100
        assert lat[3] <= 1000
        # and it stays off: nothing re-energises the output after the trip
        assert not [c for c in b.sim.output_log if c.t_ms > p_off and c.name in ("pwr_en", "k12")
                    and c.value == 1]
        # the BMS is told why (CST within one 10 ms session tick)
        cst = [(t, d) for t, cid, d in b.frames if cid == CST_ID and t >= t0]
        assert cst and cst[0][0] - p_off <= 11, cst[:1]
        d = cst[0][1]
        assert d[0] & 0x30 == 0x10, d.hex()                          # reason: fault
        f = d[1] | d[2] << 8
        assert f & (fault * 3) == fault, (hex(f), d.hex())
        if error:
            assert d[3] & (error * 3) == error, d.hex()
    finally:
        b.close()


def _stuck_estop(tmp_path, plant_params=None, config=None):
    """E-stop mid-charge while the measured current stays at 200 A (power
    stage not responding).  Returns (bench, t0, command time, physical time)."""
    cfg = {"lockout.enable": 0}
    cfg.update(config or {})
    b = Bench(tmp_path / "state", config=cfg, plant_params=plant_params)
    return (b,) + b.stuck_estop()


def test_issue10_item03_contacts_open_within_100ms(tmp_path):
    """Issue 10 item 3 (NB/T 33008.1 5.4.7 measures the contacts): E-stop
    with the current not falling.  The open command must leave the
    contactor its opening time (trip.k_release_ms, default 20 ms; the
    plant's contactor needs 15 ms) and a margin: the *physical* K1/K2
    contacts are apart <= 100 ms after the cause.  Before: command at
    +99 ms, contacts apart at +115 ms."""
    b, t0, k_cmd, k_phys = _stuck_estop(tmp_path)
    try:
        p_off = b.out_change("pwr_en", 0, t0)
        assert p_off - t0 <= PROTECT_MS          # the next protection tick
        assert k_cmd is not None and k_phys is not None, (k_cmd, k_phys, b.plant.k12_log)
        LATENCY["H-3 stuck 200 A"] = (p_off - t0, k_cmd - t0, k_phys - t0, None)
        print("\nE-stop, current stuck: pwr_en=0 +%d ms, K1/K2 open cmd +%d ms, contacts apart +%d ms"
              % (p_off - t0, k_cmd - t0, k_phys - t0))
        # command at 100 - 20 (opening time) - 5 (margin) - one 5 ms tick after
        # the first sample: 70..75 ms after the cause
        assert 70 <= k_cmd - t0 <= 75, k_cmd - t0
        assert k_phys - t0 <= 100, k_phys - t0               # the physical contacts
        assert k_phys - k_cmd >= 15                           # the plant really needs its 15 ms
        assert not b.plant.k12 and b.sim.outputs["k12"] == 0
    finally:
        b.close()
    # A slower contactor (30 ms): its opening time is configuration.
    b, t0, k_cmd, k_phys = _stuck_estop(tmp_path / "slow", PlantParams(contactor_open_ms=30),
                                        {"trip.k_release_ms": 35})
    try:
        assert k_cmd is not None and k_phys is not None, (k_cmd, k_phys)
        print("slow contactor: cmd +%d ms, contacts apart +%d ms" % (k_cmd - t0, k_phys - t0))
        assert 55 <= k_cmd - t0 <= 60, k_cmd - t0            # 100 - 35 - 5 - 5
        assert k_phys - k_cmd >= 30 and k_phys - t0 <= 100, (k_cmd - t0, k_phys - t0)
    finally:
        b.close()


def test_fail_safe_exception_mid_charge(tmp_path):
    """H-9: an exception in the session task mid-charge.  Every output goes
    safe (pwr_en 0, K1/K2 0, K3/K4 0, bleeder 1) within one session tick,
    stays safe, the firmware keeps running (lock-step ACKs, telemetry, the
    console answers, CAN frames are still received) and no session starts
    again: a new vehicle is never energised."""
    b = Bench(tmp_path / "state", config={"lockout.enable": 0}, console=True)
    try:
        b.wait_charging()
        assert b.run_until(lambda: b.plant.i > 95, 10000)
        t0 = b.fine_steps(1)
        b.sim.inject_exception()
        b.run(50)
        sim = b.sim
        want = {"pwr_en": 0, "k12": 0, "k34": 0, "bleed": 1}
        when = {n: sim.first_change(n, v, t0) for n, v in want.items()}
        assert None not in when.values(), (when, sim.outputs)
        lat = {n: t - t0 for n, t in when.items()}
        assert max(lat.values()) <= 11, lat      # the next 10 ms session tick
        assert all(sim.outputs[n] == v for n, v in want.items()), sim.outputs
        assert sim.outputs["i_set"] == 0 and sim.outputs["v_set"] == 0
        t_fs = max(when.values())
        LATENCY["H-9"] = (lat["pwr_en"], lat["k12"], None, None)
        print("\nH-9 fail-safe: %s ms after the injection" % lat)
        assert [t for t, s in sim.texts if s.startswith("fail-safe exception: RuntimeError")]
        sim.step_ms = 10
        b.run(2000)
        # still running: console, safety state, CAN receive
        assert b.console.eval("app.sup.failed") is True
        ok, why = b.console.eval("app.sup.start_allowed(b'%s', 0)" % b.p.vin)
        assert ok is False and why.startswith("fail-safe latched"), why
        rx0 = b.console.eval("app.board.rx_frames")
        # a new vehicle: plugged, its BMS talking, never energised
        b.replug()
        b.run(10000)
        assert b.console.eval("app.board.rx_frames") > rx0
        assert b.console.eval("app.halted").startswith("exception: RuntimeError")
        assert sim.telemetry and sim.telemetry[-1][0] > b.now - 1000      # records task alive
        assert not [c for c in sim.output_log if c.t_ms > t_fs and c.name in ("pwr_en", "k12", "k34")
                    and c.value]
        assert all(sim.outputs[n] == v for n, v in want.items()), sim.outputs
        assert b.bms.stage in ("wait_chm", "handshake"), b.bms.stage   # no session
        assert b.plant.v_out < 60
    finally:
        b.close()
