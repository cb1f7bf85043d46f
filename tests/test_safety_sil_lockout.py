"""VIN lockout in the SIL: three warnings of one check for one VIN in a
calendar day refuse that VIN's next session for 12 h; another VIN still
charges; the lockout survives a reboot; it ends 12 simulated hours after
the third warning.

The warnings are real: S-1 (BCL current demand above the BCP limit, a BMS
simulator field override) raised in three sessions of the same vehicle.
The firmware's RTC in lock-step is ``epoch + simulated seconds``; the
12 h expiry starts a fresh firmware process at a later simulated date
(``Simulation(epoch_s=...)``) on the same state directory.
"""
from __future__ import annotations

import re

from safety_sil_support import EPOCH, VIN_A, VIN_B, Bench, params, scenario

CRM_ID = 0x1801F456
LOCK_S = 12 * 3600


def s1_scenario():
    return scenario(dict(type="override", message="BCL", stage="charging", after_ms=500,
                         fields={"current_a": 100.5}))


def run_warning_session(b):
    ch = b.wait_charging(20000)
    assert b.run_until(lambda: b.bms.done, 20000), b.bms.stage
    b.wait_stage("done", 5000, after=ch)       # K1/K2 open before the gun is pulled
    t = b.first_event("raise", "S-1", ch)
    assert t is not None, b.safety()
    return t


def refusal(b, after):
    """(time, text) of the firmware's refusal of VIN A after ``after``."""
    r = [(t, s) for t, s in b.texts("refused") if t >= after]
    return r[0] if r else None


def assert_refused(b, t_from, vin=VIN_A):
    """A session of ``vin`` from ``t_from``: refused at recognition (no CRM
    0xAA, no current); returns (time, remaining lock seconds it reported)."""
    assert b.run_until(lambda: refusal(b, t_from) is not None, 10000), b.sim.texts[-8:]
    b.run(3000)
    t, text = refusal(b, t_from)
    m = re.match(r"refused VIN (\S+): VIN locked out \(S-1 [^)]*\) for (\d+) s$", text)
    assert m and m.group(1) == vin, text
    crm_aa = [tt for tt, cid, d in b.frames if cid == CRM_ID and tt >= t_from and d[0] == 0xAA]
    assert not crm_aa
    # refused at BRM (after the insulation self-test, which energises only
    # the cable): nothing is switched on after the refusal, no current ever
    assert not [c for c in b.sim.output_log if c.t_ms >= t and c.name in ("pwr_en", "k12")
                and c.value == 1]
    assert b.stage_time("precharge", t_from) is None and b.stage_time("charging", t_from) is None
    assert max(abs(i) for tt, _, _, i, _ in b.vphys if tt >= t_from) == 0.0
    return t, int(m.group(2))


def test_lockout_three_warnings_reboot_and_expiry(tmp_path):
    state = tmp_path / "state"
    pa, pb = params(vin=VIN_A), params(vin=VIN_B)
    # -- day 1: three sessions of vehicle A, each stopped by S-1 (level II)
    b = Bench(state, p=pa, scen=s1_scenario())
    try:
        raises = [run_warning_session(b)]
        for _ in range(2):
            b.replug(pa, s1_scenario())
            raises.append(run_warning_session(b))
        b.run(1500)                                  # slow tick: count, lock, save
        assert not b.safety("trip"), b.safety("trip")
        locks = b.safety("lockout", "S-1")
        assert len(locks) == 1 and locks[0][4] == 3, b.safety()
        assert locks[0][0] >= raises[2]
        t_lock_s = locks[0][0] // 1000               # slow tick time (RTC = EPOCH + s)
        # -- the 4th session of A: refused
        t4 = b.now
        b.replug(pa, None)
        t_ref, left = assert_refused(b, t4)
        until = EPOCH + t_ref // 1000 + left
        assert abs(until - (EPOCH + t_lock_s + LOCK_S)) <= 1, (until, t_lock_s)
        # -- vehicle B charges on the same charger
        t5 = b.now
        b.replug(pb, None)
        b.wait_charging(20000)
        assert b.run_until(lambda: b.plant.i > 50, 10000)
        assert b.out_change("pwr_en", 1, t5) is not None
        assert refusal(b, t5) is None
    finally:
        t_end = b.now
        b.close()

    # -- reboot (same state dir; the RTC goes on where it was): A still refused
    b = Bench(state, p=pa, epoch_s=EPOCH + t_end // 1000 + 1)
    try:
        _, left2 = assert_refused(b, 0)
        assert 0 < left2 <= left
    finally:
        b.close()

    # -- one minute before the end of the 12 h: still refused
    b = Bench(state, p=pa, epoch_s=until - 60)
    try:
        _, left3 = assert_refused(b, 0)
        assert 0 < left3 <= 60
    finally:
        b.close()

    # -- 12 h after the third warning: A charges again
    b = Bench(state, p=pa, epoch_s=until)
    try:
        b.wait_charging(20000)
        assert refusal(b, 0) is None
        assert b.run_until(lambda: b.plant.i > 50, 10000)
    finally:
        b.close()
