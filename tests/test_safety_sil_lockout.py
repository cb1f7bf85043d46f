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


# ---- issue 10 item 4: a CRC-valid record the firmware rejects ---------------

import struct
import zlib

from host_tools.eventlog import decode_files

L_ESTOP, L_CONTACTOR = 0x01, 0x02


CURRENT = 2          # firmware/safety/lockout.py _VERSION (2020-epoch times)


def lockout_payload(latched=0, version=CURRENT):
    """A lockout record as firmware/safety/lockout.py packs it (no entries)."""
    return struct.pack("<BBBB", version, latched, 0, 0) + struct.pack("<B17si", 0, b"", 0)


def store_record(seq, payload):
    """A CRC-valid record as firmware/store.py writes it."""
    n = len(payload)
    crc = zlib.crc32(payload, zlib.crc32(struct.pack("<IHH", seq, n, 0xFFFF)))
    return struct.pack("<4sIHHI", b"SRC1", seq, n, 0xFFFF, crc) + payload


def energised(b, after=0):
    return [c for c in b.sim.output_log if c.t_ms >= after and c.name in ("pwr_en", "k12")
            and c.value == 1]


def store_events(state):
    return [(r["a"], r["text"]) for r in decode_files([state])[0] if r["name"] == "store"]


def test_issue10_item04_newer_version_record_falls_back(tmp_path):
    """safety.rec written by a newer firmware (version 3, valid CRC), the good
    generation with the contactor-fault latch in safety.rec.old: the firmware
    uses .old, so the latch holds (refused, K1/K2 never close), and the save
    after the operator's clear keeps .old instead of the rejected file."""
    state = tmp_path / "state"
    state.mkdir()
    good = store_record(41, lockout_payload(L_CONTACTOR))
    (state / "safety.rec.old").write_bytes(good)
    (state / "safety.rec").write_bytes(store_record(42, lockout_payload(0, version=CURRENT + 1)))
    b = Bench(state, console=True)
    try:
        assert b.run_until(lambda: b.texts("refused"), 10000), b.sim.texts[-10:]
        b.run(2000)
        t, why = b.texts("refused")[0]
        assert why == "refused contactor fault (H-7): inspect, clear_contactor_fault()", why
        stores = [s for _, s in b.texts("store ")]
        assert any("safety.rec rejected: lockout record version 3 unknown" in s for s in stores), stores
        assert any("using" in s and "safety.rec.old" in s for s in stores), stores
        assert not energised(b), energised(b)
        assert b.stage_time("charging") is None
        assert store_events(state) == [(0, "warning")]
        # the operator clears the latch: saved as a new generation; the good
        # .old is what the save moves aside, never lost to the rejected file
        out, err = b.console.exec("clear_contactor_fault()")
        assert out == "contactor fault latch cleared" and not err, (out, err)
        b.run(1500)                                   # slow tick: save
        assert (state / "safety.rec.old").read_bytes() == good
        cur = (state / "safety.rec").read_bytes()
        assert cur[16:] == lockout_payload(0) and struct.unpack_from("<I", cur, 4)[0] == 43
        # cleared: the next session charges
        t1 = b.now
        b.replug()
        b.wait_charging(20000)
        assert energised(b, t1)
    finally:
        b.close()


def test_issue10_item04_unusable_record_refuses_until_cleared_on_console(tmp_path):
    """Only a record this firmware rejects (no other generation): the latches
    are unknown, so no defaults: refused with the reason on the console and
    in the event log, across a reboot, until clear_store_fault()."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "safety.rec").write_bytes(store_record(7, lockout_payload(L_CONTACTOR, version=CURRENT + 1)))
    b = Bench(state, console=True)
    try:
        assert b.run_until(lambda: b.texts("refused"), 10000), b.sim.texts[-10:]
        b.run(1500)
        assert b.texts("refused")[0][1] == ("refused safety record unusable (latches unknown): "
                                            "inspect, clear_store_fault()")
        assert not energised(b)
        assert store_events(state) == [(1, "refused")]
    finally:
        b.close()
    # reboot: still refused (the refusal itself was saved)
    b = Bench(state, console=True)
    try:
        assert b.run_until(lambda: b.texts("refused"), 10000), b.sim.texts[-10:]
        assert "safety record unusable" in b.texts("refused")[0][1]
        out, _ = b.console.exec("why()")
        assert "clear_store_fault()" in out, out
        assert not energised(b)
        out, err = b.console.exec("clear_store_fault()")
        assert out == "safety record latch cleared: state reset to defaults" and not err, (out, err)
        t1 = b.now
        out, err = b.console.exec("start()")
        assert out.startswith("start requested"), (out, err)
        b.wait_charging(20000)
        assert energised(b, t1)
        assert any(r["name"] == "operator" and r["text"] == "store"
                   for r in decode_files([state])[0])
    finally:
        b.close()
