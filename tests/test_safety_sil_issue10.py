"""Issue 10 (safety), items 1, 12, 13: the supervisor's own rules and the
test gaps, in the lock-step SIL (firmware process + plant + BMS simulator).

What is asserted is what a user sees: the plant's *physical* current and
K1/K2 contacts, the outputs the board was given, frames on the bus, the
firmware's safety events and its persistent event log (state/events.N,
decoded with host_tools.eventlog), in simulated ms.  (Item 3 is in
tests/test_safety_sil_protections.py.)
"""
from __future__ import annotations

from host_tools import eventlog
from safety_sil_support import Bench, all_levels, scenario

CST_ID = 0x101AF456
F_OTHER = 0x400
PROTECT_MS = 5              # sched.protect_ms default
CHECK_MS = 100              # sched.checks_ms default
RX_LAT = 10                 # a BMS frame reaches the firmware's CAN task within 10 ms
# the session's own BCL/BCS timeouts out of the way: it "believes" all is well
SESSION_BLIND = {"lockout.enable": 0, "session.bcl_ms": 60000, "session.bcs_ms": 60000}


def log_records(b: Bench) -> list[dict]:
    """The firmware's persistent event log (what a field engineer pulls)."""
    recs, _ = eventlog.decode_files([b.state_dir])
    return recs


def current_below(b: Bench, amps: float, after: int):
    for t, _, _, i, _ in b.vphys:
        if t >= after and i < amps:
            return t
    return None


def current_flowing_after(b: Bench, amps: float, after: int):
    return [t for t, _, _, i, _ in b.vphys if t >= after and i >= amps]


def stage_at(b: Bench, t: int) -> str:
    st = [s for tt, s in b.sim.texts if tt <= t and s.startswith("stage ")]
    return st[-1][6:] if st else ""


def cst_after(b: Bench, t: int):
    return [(tt, d) for tt, cid, d in b.frames if cid == CST_ID and tt >= t]


# ------------------------------------------------------------------ item 1
def _silent_bms(tmp_path, messages, after_ms=4000):
    scen = scenario(*[{"type": "drop", "message": m, "stage": "charging", "after_ms": after_ms}
                      for m in messages])
    b = Bench(tmp_path / "state", scen=scen, config=SESSION_BLIND)
    b.wait_charging()
    assert b.run_until(lambda: b.plant.i > 95, 10000), b.plant.i
    return b


def _assert_cut_then_stop(b: Bench, t_last: int, limit_ms: int, pf: int):
    """H-11 as the user sees it: current cut, then K1/K2 open and CST."""
    cuts = [e for e in b.safety("raise", "H-11") if e[3] == 2]
    assert cuts, b.safety()
    t_cut = cuts[0][0]
    assert cuts[0][4] == pf
    # the age is evaluated by the 100 ms check tick (+ the frame's receive latency)
    assert limit_ms < t_cut - t_last <= limit_ms + CHECK_MS + RX_LAT, t_cut - t_last
    # "whatever the session believes": it was still charging, no CEM of its own
    assert stage_at(b, t_cut) == "charging"
    assert not [t for t, cid, _ in b.frames if cid & 0xFF == 0x56 and (cid >> 8) & 0xFF00 == 0x1F00
                and t < t_cut]                                      # no CEM
    # current to zero: the set-point on the board at once, the cable within 100 ms
    t_iset = b.out_change("i_set", 0, t_cut - PROTECT_MS)
    assert t_iset is not None and t_iset - t_cut <= PROTECT_MS, (t_iset, t_cut)
    t_low = current_below(b, 5.0, t_cut)
    assert t_low is not None and t_low - t_cut <= 100, (t_low, t_cut)
    # then stop, by the supervisor itself: trip h11.stop_ms (500) after the cut
    stops = [e for e in b.safety("raise", "H-11") if e[3] == 3]
    assert stops, b.safety()
    t_stop = stops[0][0]
    assert 500 <= t_stop - t_cut <= 500 + CHECK_MS, t_stop - t_cut
    assert b.first_event("trip", "H-11") == t_stop
    t_off = b.out_change("pwr_en", 0, t_cut)
    assert t_off is not None and t_off - t_stop <= PROTECT_MS
    t_open = b.plant_k12_open(t_cut)
    # (command within a protection tick; the plant, stepped every 10 ms, sees
    # it at its next step and opens the contacts 15 ms later)
    assert t_open is not None and t_open - t_stop <= PROTECT_MS + 10 + 15 + 10, (t_open, t_stop)
    assert not b.plant.k12 and b.sim.outputs["pwr_en"] == 0
    # the BMS is told: CST "fault", fault "other"
    cst = cst_after(b, t_stop)
    assert cst and cst[0][0] - t_stop <= 11, cst[:1]
    d = cst[0][1]
    assert d[0] & 0x30 == 0x10 and (d[1] | d[2] << 8) & (F_OTHER * 3) == F_OTHER, d.hex()
    # no current flowed after the cut (+ the 100 ms fall) in the whole silence
    assert not current_flowing_after(b, 5.0, t_cut + 100)
    # recorded: event log "risk-raised H-11 L2" (the cut) and "trip H-11"
    recs = log_records(b)
    assert [r for r in recs if r["name"] == "risk-raised" and r["a"] == 111 and r["b"] == 2], recs
    assert [r for r in recs if r["name"] == "trip" and r["a"] == 111], recs
    return t_cut, t_stop


def test_issue10_item01_bms_silent_supervisor_cuts_current_and_stops(tmp_path):
    """Issue 10 item 1 (supervisor part): the BMS goes silent mid-charge
    (no BCL, no BCS) and the session does not react (its timeouts are out
    of the way, as with the issue's BCL-right-after-BRO bug).  The
    supervisor's own rule, from the link's last-valid-message times: no
    valid BCL for > 1 s while current flows -> current to zero, then stop.
    Before: the charger kept charging for the whole 8 s silence."""
    b = _silent_bms(tmp_path, ("BCL", "BCS"))
    try:
        b.run(4000 + 8000)                        # the issue's 8 s of silence
        t_last = max(b.sent("BCL"))
        t_cut, t_stop = _assert_cut_then_stop(b, t_last, 1000, 0x10)
        print("\nBMS silent: last BCL %d, current cut +%d ms, below 5 A +%d ms, stop (K1/K2 open) +%d ms"
              % (t_last, t_cut - t_last, current_below(b, 5.0, t_cut) - t_last, t_stop - t_last))
    finally:
        b.close()


def test_issue10_item01_bcs_silent_5s(tmp_path):
    """BCL keeps coming, BCS stops: the BCS limit (5 s) applies."""
    b = _silent_bms(tmp_path, ("BCS",))
    try:
        b.run(4000 + 7000)
        # BCS is a TP message: its content reached the firmware at the EndOfMsgAck
        t_last = max(b.acked("BCS"))
        _assert_cut_then_stop(b, t_last, 5000, 0x11)
    finally:
        b.close()


# ------------------------------------------------------------------ item 12
def test_issue10_item12_output_interlock_console_in_done(tmp_path):
    """Issue 10 item 12: in stage DONE an engineer types
    ``app.out.k12=1; app.out.pwr_en=1`` (and a set-point) on the console.
    Before: 750 V on the gun for 6 s, no safety event.  Now the supervisor
    compares the commanded outputs with the stage's allowed-output table
    before anything is written: H-12 trips, the board never sees K1/K2 or
    the power stage on, the contacts never close, the event is logged."""
    scen = scenario({"type": "bst", "stage": "charging", "after_ms": 1500, "reason": "soc"})
    b = Bench(tmp_path / "state", scen=scen, config={"lockout.enable": 0}, console=True)
    try:
        b.wait_charging()
        b.wait_stage("done", 30000, after=b.now)
        b.run(500)
        t0 = b.now
        n_close = len(b.plant.k12_log)
        out, err = b.console.exec("app.out.v_set = 7500; app.out.i_set = 100; "
                                  "app.out.k12 = 1; app.out.pwr_en = 1")
        assert not err, err
        b.run(6000)
        ev = b.safety("raise", "H-12")
        assert ev and ev[0][3] == 3, b.safety()
        t_ev = ev[0][0]
        assert ev[0][4] == 13 * 100 + 11             # stage 13 (done), K1/K2 1, power 1
        assert b.first_event("trip", "H-12") == t_ev
        # never reached the board, never closed, never live
        assert not [c for c in b.sim.output_log if c.t_ms >= t0 and c.name in ("k12", "pwr_en")
                    and c.value], b.sim.output_log[-10:]
        assert b.plant.k12_log[n_close:] == [] and not b.plant.k12
        assert max(v for t, v, _, _, _ in b.vphys if t >= t0) < 60.0
        assert max(vi for t, _, vi, _, _ in b.vphys if t >= t0) < 60.0
        assert b.console.eval("app.sup.trip_name") == "H-12 output interlock"
        recs = log_records(b)
        assert [r for r in recs if r["name"] == "trip" and r["a"] == 112 and r["b"] == 1311], recs
    finally:
        b.close()


# ------------------------------------------------------------------ item 13
def test_issue10_item13_exception_in_protection_task_forces_safe(tmp_path):
    """Issue 10 item 13: an exception inside the protection task itself (the
    board's input driver fails on every read) mid-charge.  The fail-safe
    must drive the board safe directly (board.force_safe): the task that
    would write the outputs is the one failing.  Everything off in the
    failing tick, K1/K2 physically open 15 ms later, held for seconds; the
    firmware keeps running (console, CAN) and logs one fail-safe, not one
    per tick.  Before: the failing task stayed due and re-ran forever in
    the same pass (the lock-step never answered)."""
    b = Bench(tmp_path / "state", config={"lockout.enable": 0}, console=True)
    try:
        b.wait_charging()
        assert b.run_until(lambda: b.plant.i > 95, 10000)
        t0 = b.fine_steps(1)
        b.sim.inject_exception(2)
        b.run(50)
        sim = b.sim
        want = {"pwr_en": 0, "k12": 0, "k34": 0, "bleed": 1, "i_set": 0}
        when = {n: sim.first_change(n, v, t0) for n, v in want.items()}
        assert None not in when.values(), (when, sim.outputs)
        assert max(when.values()) - t0 <= PROTECT_MS, when      # the next protection tick
        t_open = b.plant_k12_open(t0)
        assert t_open is not None and t_open - t0 <= PROTECT_MS + 16, t_open
        sim.step_ms = 10
        b.run(3000)
        assert all(sim.outputs[n] == v for n, v in want.items()), sim.outputs
        assert not [c for c in sim.output_log if c.t_ms > t0 and c.name in ("pwr_en", "k12", "k34")
                    and c.value]
        assert not b.plant.k12 and b.plant.i == 0
        assert b.console.eval("app.halted").startswith("exception: OSError")
        assert b.console.eval("app.sup.start_allowed(None, 0)")[0] is False
        # logged once (the app's record with the exception type, and the
        # supervisor's H-9 event), not once per failing tick
        fs = [r for r in log_records(b) if r["name"] == "fail-safe"]
        assert [r["text"] for r in fs if r["text"]] == ["OSError"], fs
        assert len(fs) <= 2, fs
        assert len([s for _, s in sim.texts if s.startswith("fail-safe ")]) == 1
    finally:
        b.close()


def test_issue10_item13_stale_bcl_bcs_make_checks_inactive(tmp_path):
    """Issue 10 item 13: the app marks BCL/BCS stale from the link's times
    (ChargerApp._checks), not a test setting ``sup.stale``.  BCS stops: 5 s
    later (safety.stale_bcs_ms) the checks fed by BCS read INACTIVE with the
    reason, those fed by BCL stay active; then BCL stops: 1 s later
    (safety.stale_bcl_ms) S-1/S-4 read INACTIVE.  Seen on the console as a
    field engineer would (check_diag)."""
    cfg = dict(SESSION_BLIND, **{"h11.bcl_ms": 60000, "h11.bcs_ms": 60000})
    cfg.update(all_levels(1))
    scen = scenario({"type": "drop", "message": "BCS", "stage": "charging", "after_ms": 3000},
                    {"type": "drop", "message": "BCL", "stage": "charging", "after_ms": 9000})
    b = Bench(tmp_path / "state", scen=scen, config=cfg, console=True)
    try:
        t_ch = b.wait_charging()
        b.run_until(lambda: b.now >= t_ch + 3000, 10000)
        t_bcs = max(b.acked("BCS"))

        def diag(i):
            return b.console.eval("app.sup.check_diag(%d)" % i)

        b.run_until(lambda: b.now >= t_bcs + 4500, 10000)
        for i in (2, 5):
            assert diag(i)[0] != "INACTIVE", (i, diag(i))
        b.run_until(lambda: b.now >= t_bcs + 5000 + CHECK_MS + 50, 10000)
        for i in (2, 5):
            st, why = diag(i)[:2]
            assert (st, why) == ("INACTIVE", "BCS/output stale"), (i, st, why)
        for i in (1, 4):
            assert diag(i)[0] != "INACTIVE", (i, diag(i))
        b.run_until(lambda: b.now >= t_ch + 9000, 10000)
        t_bcl = max(b.sent("BCL"))
        b.run_until(lambda: b.now >= t_bcl + 1000 + CHECK_MS + 50, 10000)
        for i in (1, 4):
            st, why = diag(i)[:2]
            assert (st, why) == ("INACTIVE", "BCL/BCP stale"), (i, st, why)
    finally:
        b.close()


def test_issue10_item13_cc1_on_ms_plug_debounce(tmp_path):
    """Issue 10 item 13: the plug debounce session.cc1_on_ms (default 100 ms)
    as a user sees it: a CC1 glitch of 80 ms does not start anything; a real
    plug-in is "connected" 100 ms (+ one session tick + one input read)
    after CC1 entered its band, not 500."""
    b = Bench(tmp_path / "state", config={"lockout.enable": 0})
    try:
        b.plant.plugged = False
        b.run(2000)
        assert stage_at(b, b.now) == "idle"
        t_glitch = b.now
        b.plant.plugged = True
        b.run(80)
        b.plant.plugged = False
        b.run(1000)
        assert b.stage_time("connected", t_glitch) is None, b.sim.texts[-5:]
        t_plug = b.now
        b.plant.plugged = True
        b.run(1000)
        t_con = b.stage_time("connected", t_plug)
        assert t_con is not None, b.sim.texts[-5:]
        print("\nplug -> connected: %d ms" % (t_con - t_plug))
        assert 100 <= t_con - t_plug <= 100 + 10 + PROTECT_MS + 10, t_con - t_plug
    finally:
        b.close()
