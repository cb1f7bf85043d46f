"""S-1..S-13 in the SIL: persistence, release, missing data, actions.

Every deviation reaches the firmware the way it would on a bench: as a
BMS message field (BMS simulator scenario override), as a charger
measurement (plant override) or as a frame.  Times are simulated ms; the
supervisor's check tick is 100 ms, so "exactly the persistence time" means
the raise comes 5000 ms after the first check tick that saw the condition,
i.e. 5000..5000+100 ms (+ frame delivery) after the deviating frame.

Sessions are shared: all checks at level I (warning: recorded, charging
goes on) lets one session raise and release several checks in waves.
"""
from __future__ import annotations

import pytest

from safety_sil_support import (CHECK_TICK_MS, PERSIST_MS, RELEASE_MS, Bench, all_levels, params,
                                scenario)

# single frame: sent at the end of step T, decoded by the firmware in (T, T+10]
FRAME_SLACK = 12
RESULTS = {}


def _window(b, after, dur):
    ch = b.bms.stage_entry["charging"]
    return ch + after, ch + after + dur


def assert_raise(b, ident, onset, slack=CHECK_TICK_MS + FRAME_SLACK, note=""):
    """Raised 5000 ms after the first check tick that saw ``onset``; never before."""
    raises = b.safety("raise", ident)
    assert raises, "%s never raised (%s); events %s" % (ident, note, b.safety())
    early = [e for e in raises if onset - 2000 <= e[0] < onset + PERSIST_MS]
    assert not early, "%s raised before the persistence time: %s (onset %d)" % (ident, early, onset)
    t = b.first_event("raise", ident, onset)
    assert t is not None
    d = t - onset
    assert PERSIST_MS <= d <= PERSIST_MS + slack, "%s raised %d ms after onset %d" % (ident, d, onset)
    return t, d


def assert_clear(b, ident, offset, slack=CHECK_TICK_MS + FRAME_SLACK):
    t = b.first_event("clear", ident, offset)
    assert t is not None, "%s not released; events %s" % (ident, b.safety())
    early = [e for e in b.safety("clear", ident) if offset - 20000 < e[0] < offset + RELEASE_MS]
    assert not early, "%s cleared early: %s" % (ident, early)
    d = t - offset
    assert RELEASE_MS <= d <= RELEASE_MS + slack, "%s cleared %d ms after the condition ended (%d)" % (
        ident, d, offset)
    return t, d


def first_after(times, t0):
    for t in times:
        if t >= t0:
            return t
    raise AssertionError("nothing after %d in %s" % (t0, times[-5:]))


# Waves (ms after the BMS entered "charging"); each condition holds 6 s.
W1, W2, W3, W4, D = 2000, 20000, 38000, 56000, 6000
W_BMV = 60000      # BMV is sent 1 s into charging, then every 10 s


def _waves_scenario():
    return scenario(
        # wave 1: S-1 (BCL current 100.5 A > 99.5 % of BCP 100 A), S-5 (BCS
        # voltage 200 V vs ~325 V measured), S-10 (BSM 60 degC > BCP 55),
        # and a 4.8 s S-4 pulse (BCL voltage 350.0 V > 99.5 % of 350.4 V)
        dict(type="override", message="BCL", stage="charging", after_ms=W1, duration_ms=D,
             fields={"current_a": 100.5}),
        dict(type="override", message="BCS", stage="charging", after_ms=W1, duration_ms=D,
             fields={"voltage_v": 200.0}),
        dict(type="override", message="BSM", stage="charging", after_ms=W1, duration_ms=D,
             fields={"max_temp_c": 60}),
        dict(type="override", message="BCL", stage="charging", after_ms=W1, duration_ms=4800,
             fields={"voltage_v": 350.0}),
        # wave 2: S-4 (BCL voltage), S-2 (BCS current 90 A vs 98 A delivered),
        # S-13 (BCS SOC 65 % vs 50 % + integral), S-11 (BSM +1 degC / 2 s ramp)
        dict(type="override", message="BCL", stage="charging", after_ms=W2, duration_ms=D,
             fields={"voltage_v": 350.0}),
        dict(type="override", message="BCS", stage="charging", after_ms=W2, duration_ms=D,
             fields={"current_a": 90.0, "soc_pct": 65}),
        dict(type="override", message="BSM", stage="charging", after_ms=W2, duration_ms=D,
             fields={"max_temp_c": 27}),          # index 6: ramped by the test
        # wave 3: S-7 (BCS cell 3.70 V > 100.5 % of 3.65 V), S-12 (BCS SOC
        # byte 101 %), S-3 by the plant (i_out 101 A > 100.5 A)
        dict(type="override", message="BCS", stage="charging", after_ms=W3, duration_ms=D,
             fields={"max_cell_v": 3.70}, set_bytes={"6": 101}),
        # wave 4: S-6 by the plant (v_outside 356 V > 100.5 % of 350.4 V),
        # S-8 (one BMV cell 0.3 V low)
        dict(type="override", message="BMV", stage="charging", after_ms=W_BMV, duration_ms=10000,
             fields={"cells": tuple([3.35] * 95 + [3.05])}),
    )


@pytest.fixture(scope="module")
def waves(tmp_path_factory):
    """One session, every check at level I, four waves of deviations."""
    cfg = all_levels(1)
    cfg.update({"lockout.enable": 0, "s11.sample_ms": 1000, "s11.samples": 7})
    b = Bench(tmp_path_factory.mktemp("waves") / "state", scen=_waves_scenario(), config=cfg, console=True)
    marks = {}

    def hook(now):
        ch = b.bms.stage_entry.get("charging")
        if ch is None:
            return
        el = now - ch
        # S-11 ramp: 27, 28, 29 degC at W2, +2 s, +4 s
        a = b.bms.scenario.actions[6]
        a.opts["fields"]["max_temp_c"] = 27 + max(0, min(2, (el - W2) // 2000))
        if el >= W3 and "s3_on" not in marks:
            b.sim.override("i_out", 1010)
            marks["s3_on"] = now
        if el >= W3 + D and "s3_off" not in marks:
            b.sim.release("i_out")
            marks["s3_off"] = now
        if el >= W4 and "s6_on" not in marks:
            b.sim.override("v_outside", 3560)
            marks["s6_on"] = now
        if el >= W4 + D and "s6_off" not in marks:
            b.sim.release("v_outside")
            marks["s6_off"] = now

    b.sim.step_hooks.append(hook)
    ch = b.wait_charging()
    # 3 s into wave 1: the console shows the pending checks and since when
    b.run_until(lambda: b.now >= ch + W1 + 3000, 10000)
    diag = {i: b.console.eval("app.sup.check_diag(%d)" % i) for i in (1, 4, 5, 10)}
    b.run_until(lambda: b.now >= ch + W_BMV + 10000 + 12000, 120000)
    b.marks = marks
    b.diag_w1 = diag
    yield b
    b.close()


def test_wave1_bcl_bcs_bsm(waves):
    b = waves
    on, off = _window(b, W1, D)
    bcl_on = b.bms.scenario.actions[0].fired_ms
    assert bcl_on == on
    # S-1: BCL is a single frame; the first deviating one was sent at `on`
    t1, d1 = assert_raise(b, "S-1", on)
    # exactly: the console showed PENDING since the first tick that saw it
    st, why, since, value, limit = b.diag_w1[1]
    assert st == "PENDING" and value == 1005 and limit == 995
    assert t1 == since + PERSIST_MS
    c1, e1 = assert_clear(b, "S-1", first_after(b.sent("BCL"), off))
    RESULTS["S-1"] = (d1, e1)
    # S-5: BCS is a TP message: it counts from the charger's EndOfMsgAck
    bcs_on = first_after(b.acked("BCS"), on)
    t5, d5 = assert_raise(b, "S-5", bcs_on, CHECK_TICK_MS)
    assert t5 == b.diag_w1[5][2] + PERSIST_MS
    _, e5 = assert_clear(b, "S-5", first_after(b.acked("BCS"), off), CHECK_TICK_MS)
    RESULTS["S-5"] = (d5, e5)
    # S-10
    t10, d10 = assert_raise(b, "S-10", on)
    assert t10 == b.diag_w1[10][2] + PERSIST_MS
    _, e10 = assert_clear(b, "S-10", first_after(b.sent("BSM"), off))
    RESULTS["S-10"] = (d10, e10)
    # S-4 pulse of 4.8 s: pending, never raised
    assert b.diag_w1[4][0] == "PENDING"
    assert not [e for e in b.safety("raise", "S-4") if e[0] < on + 15000], b.safety("raise", "S-4")
    # level I: the session kept charging through all of it
    assert b.stage_time("stopping") is None
    assert b.sim.outputs["pwr_en"] == 1


def test_wave2_bcl_bcs_ramp(waves):
    b = waves
    on, off = _window(b, W2, D)
    _, d4 = assert_raise(b, "S-4", on)
    _, e4 = assert_clear(b, "S-4", first_after(b.sent("BCL"), off))
    RESULTS["S-4"] = (d4, e4)
    bcs_on = first_after(b.acked("BCS"), on)
    bcs_off = first_after(b.acked("BCS"), off)
    _, d2 = assert_raise(b, "S-2", bcs_on, CHECK_TICK_MS)
    _, e2 = assert_clear(b, "S-2", bcs_off, CHECK_TICK_MS)
    RESULTS["S-2"] = (d2, e2)
    _, d13 = assert_raise(b, "S-13", bcs_on, CHECK_TICK_MS)
    _, e13 = assert_clear(b, "S-13", bcs_off, CHECK_TICK_MS)
    RESULTS["S-13"] = (d13, e13)
    # S-11: the rate is sampled every s11.sample_ms (1 s here): the risk is
    # raised 5 s after the first sample that saw the +1 degC BSM
    t11, d11 = assert_raise(b, "S-11", on, 1000 + CHECK_TICK_MS + FRAME_SLACK)
    # released 10 s after the first sample that sees the drop back to the
    # real temperature (a falling rate)
    _, e11 = assert_clear(b, "S-11", first_after(b.sent("BSM"), off), 1000 + CHECK_TICK_MS + FRAME_SLACK)
    RESULTS["S-11"] = (d11, e11)
    # the ramp stayed below the BCP limit: S-10 only in wave 1
    assert len(b.safety("raise", "S-10")) == 1


def test_wave3_cell_soc_and_plant_current(waves):
    b = waves
    on, off = _window(b, W3, D)
    bcs_on = first_after(b.acked("BCS"), on)
    bcs_off = first_after(b.acked("BCS"), off)
    _, d7 = assert_raise(b, "S-7", bcs_on, CHECK_TICK_MS)
    _, e7 = assert_clear(b, "S-7", bcs_off, CHECK_TICK_MS)
    RESULTS["S-7"] = (d7, e7)
    _, d12 = assert_raise(b, "S-12", bcs_on, CHECK_TICK_MS)
    _, e12 = assert_clear(b, "S-12", bcs_off, CHECK_TICK_MS)
    RESULTS["S-12"] = (d12, e12)
    # S-3: the charger's own current measurement (plant override); the
    # firmware samples inputs every 2 ms
    _, d3 = assert_raise(b, "S-3", b.marks["s3_on"], CHECK_TICK_MS + 2)
    _, e3 = assert_clear(b, "S-3", b.marks["s3_off"], CHECK_TICK_MS + 2)
    RESULTS["S-3"] = (d3, e3)
    # a 101 A measurement is far below H-2 (240 A): no trip at level I
    assert not b.safety("trip")


def test_wave4_plant_voltage_and_bmv(waves):
    b = waves
    _, d6 = assert_raise(b, "S-6", b.marks["s6_on"], CHECK_TICK_MS + 2)
    _, e6 = assert_clear(b, "S-6", b.marks["s6_off"], CHECK_TICK_MS + 2)
    RESULTS["S-6"] = (d6, e6)
    on, off = _window(b, W_BMV, 10000)
    bmv_on = first_after(b.acked("BMV"), on)
    bmv_off = first_after(b.acked("BMV"), off)
    assert bmv_off - bmv_on == pytest.approx(10000, abs=50)   # BMV every 10 s
    _, d8 = assert_raise(b, "S-8", bmv_on, CHECK_TICK_MS)
    _, e8 = assert_clear(b, "S-8", bmv_off, CHECK_TICK_MS)
    RESULTS["S-8"] = (d8, e8)
    print("\nS-check timing (ms from the deviation reaching the firmware to raise / "
          "from its end to clear):")
    for k in sorted(RESULTS, key=lambda s: int(s[2:])):
        print("  %-5s raise +%d  clear +%d" % (k, RESULTS[k][0], RESULTS[k][1]))


# --------------------------------------------------------------- missing data
def test_missing_data_makes_checks_inactive(tmp_path):
    """BMS values "not available" (0xFF.. on the wire, optional BMV/BMT not
    sent): every check that needs them is INACTIVE with the reason, none is
    raised even where a naive comparison with NA (-1) would be true (S-2,
    S-5, S-8, S-13); INACTIVE neither raises nor releases: S-10, raised
    before its temperature went NA, stays raised until a real reading
    shows the condition false for the release time."""
    cfg = all_levels(1)
    cfg["lockout.enable"] = 0
    p = params(send_bmv=False, send_bmt=False)
    na_bcs = {str(i): 0xFF for i in range(7)}      # V, I, cell word, SOC
    scen = scenario(
        dict(type="override", message="BCP", stage="config", set_bytes={"9": 0xFF, "10": 0xFF}),
        dict(type="override", message="BCS", stage="charging", set_bytes=na_bcs),
        dict(type="override", message="BSM", stage="charging", duration_ms=6000, fields={"max_temp_c": 60}),
        dict(type="override", message="BSM", stage="charging", after_ms=6000, duration_ms=12000,
             set_bytes={"1": 0xFF}),
    )
    b = Bench(tmp_path / "state", p=p, scen=scen, config=cfg, console=True)
    try:
        ch = b.wait_charging()
        b.run_until(lambda: b.now >= ch + 12000, 15000)
        diag = b.console.eval("[app.sup.check_diag(i) for i in range(1, 14)]")
        state = {i + 1: d[0] for i, d in enumerate(diag)}
        why = {i + 1: d[1] for i, d in enumerate(diag)}
        assert b.sim.outputs["pwr_en"] == 1 and b.sim.outputs["i_set"] > 0   # still charging
        expect = {2: "BCS meas_i NA", 5: "BCS meas_v NA", 7: "cell max (BCS/BMV) NA",
                  8: "BMV stale", 9: "BCL/BCS/BMV stale", 11: "BSM temp_max NA/stale",
                  12: "BCS soc / BCP soc NA", 13: "BCS soc NA"}
        for i, w in expect.items():
            assert state[i] == "INACTIVE" and why[i] == w, (i, diag[i - 1])
        # S-10: raised from the 60 degC BSM, now NA: stays RAISED (with the reason)
        assert state[10] == "RAISED" and why[10] == "BSM/BMT temp max NA", diag[9]
        # inputs that cannot be NA on the bus (BCL/BCP rejected by the
        # decoder, the charger's own measurements): evaluated
        for i in (1, 3, 4, 6):
            assert state[i] == "OK", (i, diag[i - 1])
        b.run_until(lambda: b.now >= ch + 30000, 20000)
        for i in (2, 5, 7, 8, 9, 11, 12, 13):
            assert not b.safety("raise", "S-%d" % i), b.safety()
        t10 = b.first_event("raise", "S-10")
        assert ch + PERSIST_MS <= t10 <= ch + PERSIST_MS + CHECK_TICK_MS + FRAME_SLACK
        clears = b.safety("clear", "S-10")
        assert len(clears) == 1
        back = first_after(b.sent("BSM"), ch + 18000)     # first real temperature again
        assert RELEASE_MS <= clears[0][0] - back <= RELEASE_MS + CHECK_TICK_MS + FRAME_SLACK
    finally:
        b.close()


# --------------------------------------------------------------------- S-9
def test_s9_dqdv_divergence(tmp_path):
    """S-9 with 4 s intervals: both cells flat (dV too small: INACTIVE),
    then the highest cell rising 3x faster than the lowest for the same
    charge (dQ/dV diverges: raised after 5 s of diverging intervals), then
    both rising alike (released 10 s after the first equal interval)."""
    iv = 4000
    cfg = {"risk.level.s9": 1, "risk.level.s7": 0, "risk.level.s8": 0, "lockout.enable": 0,
           "s9.interval_ms": iv, "s9.soc_min": 0, "s9.thresh": 5}
    p = params(send_bmv=False)
    scen = scenario(
        dict(type="inject", message="BMV", stage="charging", period_ms=500, duration_ms=10 ** 7,
             fields={"cells": tuple([3.0] * 96)}),
        dict(type="override", message="BCS", stage="charging", fields={"max_cell_v": 3.0}),
    )
    A, B = 6000, 14000          # flat until A, diverging until B, then alike
    b = Bench(tmp_path / "state", p=p, scen=scen, config=cfg, console=True)

    def ramp(now):
        ch = b.bms.stage_entry.get("charging")
        if ch is None:
            return
        el = now - ch
        tb = min(max(el - A, 0), B - A) / 1000.0      # s of diverging ramp
        tc = max(el - B, 0) / 1000.0                  # s of equal ramp
        hi = 3.0 + 0.04 * tb + 0.04 * tc
        lo = 3.0 + 0.0125 * tb + 0.04 * tc
        b.bms.scenario.actions[0].opts["fields"]["cells"] = tuple([lo] * 96)
        b.bms.scenario.actions[1].opts["fields"]["max_cell_v"] = hi

    b.sim.step_hooks.append(ramp)
    try:
        ch = b.wait_charging()
        b.run_until(lambda: b.now >= ch + A - 500, 10000)
        st, why, *_ = b.console.eval("app.sup.check_diag(9)")
        # (between two samples the last result is shown as "interval running")
        assert st == "INACTIVE" and why in ("dV too small", "interval running"), (st, why)
        b.run_until(lambda: b.now >= ch + B + 2 * iv + RELEASE_MS + 1000, 60000)
        t = b.first_event("raise", "S-9")
        assert t is not None, b.safety()
        # the condition is seen at the end of the first interval with enough
        # dV of the ramp (<= 2 intervals after it starts), raised 5 s later
        d = t - (ch + A)
        assert PERSIST_MS < d <= 2 * iv + PERSIST_MS + CHECK_TICK_MS, d
        c = b.first_event("clear", "S-9")
        assert c is not None, b.safety()
        e = c - (ch + B)
        assert RELEASE_MS < e <= 2 * iv + RELEASE_MS + CHECK_TICK_MS, e
        assert len(b.safety("raise", "S-9")) == 1
        RESULTS["S-9"] = (d, e)
        print("\nS-9 raise %d ms after the divergence began, clear %d ms after it ended" % (d, e))
    finally:
        b.close()


# ------------------------------------------------------------ level actions
def test_levels_stop_and_trip_through_the_bus(tmp_path):
    """Default levels: S-1 (level II) ends the session with a controlled
    stop and CST "fault / other"; after a re-plug S-10 (level III) trips:
    power off on the raise tick, K1/K2 open within 100 ms."""
    scen1 = scenario(dict(type="override", message="BCL", stage="charging", after_ms=1000,
                          fields={"current_a": 100.5}))
    b = Bench(tmp_path / "state", scen=scen1, config={"lockout.enable": 0})
    try:
        ch = b.wait_charging()
        b.run_until(lambda: b.bms.done, 20000)
        b.wait_stage("done", 5000, after=ch)
        t1 = b.first_event("raise", "S-1")
        assert t1 is not None and t1 - (ch + 1000) >= PERSIST_MS
        assert not b.safety("trip")
        cst = [(t, d) for t, cid, d in b.frames if cid == 0x101AF456]
        assert cst and cst[0][0] - t1 <= 20, (cst[:1], t1)
        d = cst[0][1]
        assert d[0] & 0x30 == 0x10 and (d[1] | d[2] << 8) & 0xC00 == 0x400, d.hex()
        assert b.out_change("pwr_en", 0, t1) is not None
        assert "stop_request" in b.bms.stop_reason or "CST" in b.bms.stop_reason
        # S-10 (level III) on the next session of the same vehicle; reaching
        # "charging" again also shows the S-1 stop request did not outlive its
        # session (it used to stop the next session at LOCKING)
        scen2 = scenario(dict(type="override", message="BSM", stage="charging", after_ms=1000,
                              fields={"max_temp_c": 60}))
        t_plug = b.now
        b.replug(scen=scen2)
        ch2 = b.wait_charging(20000)
        assert ch2 > t_plug
        b.run_until(lambda: b.first_event("trip", "S-10") is not None, 10000)
        b.run(300)
        assert [e[2][:4] for e in b.safety("trip")] == ["S-10"], b.safety("trip")
        t10 = b.first_event("raise", "S-10", ch2)
        assert PERSIST_MS <= t10 - (ch2 + 1000) <= PERSIST_MS + CHECK_TICK_MS + FRAME_SLACK
        assert b.first_event("trip", "S-10") == t10
        off = b.out_change("pwr_en", 0, ch2)
        k = b.out_change("k12", 0, ch2)
        assert off == t10 and k - t10 <= 100, (t10, off, k)
        cst = [(t, d) for t, cid, d in b.frames if cid == 0x101AF456 and t >= t10]
        assert cst and cst[0][0] - t10 <= 20
        print("\nS-10 trip: pwr_en=0 +%d ms, K1/K2 open +%d ms after the raise" % (off - t10, k - t10))
    finally:
        b.close()
