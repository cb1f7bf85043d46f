"""The diagnostic commands (D-1) typed at the firmware's console in the middle
of a simulated charge.

One lock-step SIL session (firmware on the master side of a pseudo-terminal,
BMS simulator on the simulated bus) is driven to the charging stage; the
test then types every command into the console (the friendly REPL, as an
engineer at a terminal would) and checks what a user would read: the stage,
a current close to the BMS demand, message ages, a risk that becomes
RAISED after a fault is injected, the trip in faults(), refusals of invalid
settings, CCS frames in the CAN trace.  The firmware only runs while the
harness steps time, so each command is typed, then the simulation is stepped
until the prompt comes back; a reader thread drains the terminal so that
long outputs (cfg()) never fill the pty buffer.
"""
import json
import os
import re
import sys
import time

import pytest

from host_tools.bms.battery import BatteryPack
from host_tools.bms.params import BmsParams
from host_tools.bms.simulator import BmsSimulator
from host_tools.platform.sil import Terminal
from host_tools.sil import Plant, Simulation

if not sys.platform.startswith("linux"):
    pytest.skip("needs Linux pseudo-terminals", allow_module_level=True)

PROMPT = b"\r\n>>> "


class Bench:
    def __init__(self, tmp):
        self.tmp = tmp
        self.p = BmsParams(capacity_ah=20, cells=96, soc=50, target_soc=95).resolved()
        pack = BatteryPack(self.p.chemistry, self.p.capacity_ah, self.p.cells, self.p.soc)
        self.cfg_path = tmp / "config.json"
        # S-2 as a warning (level I) so that the injected deviation raises a
        # risk without ending the session; 1 s persistence keeps the test short.
        # The console waits up to 1 s for the pty reader (default 20 ms, then
        # it drops output): on a loaded machine the reader thread may not run
        # within 20 ms, and a dropped prompt is a harness artefact.
        self.cfg_path.write_text(json.dumps({"risk.level.s2": 1, "risk.persist_ms": 1000,
                                             "console.tx_timeout_ms": 1000}))
        self.state = tmp / "state"
        master, slave = os.openpty()
        self.sim = Simulation(plant=Plant(pack), console_fd=master, state_dir=str(self.state),
                              config=str(self.cfg_path))
        os.close(master)
        self.term = Terminal(slave)
        self.bms = BmsSimulator(self.sim.bus(), self.p, pack=pack, drive_pack=False)
        self.sim.step_hooks.append(self.bms.poll)

    def stage(self):
        st = [t for _, t in self.sim.texts if t.startswith("stage ")]
        return st[-1][6:] if st else None

    def type(self, line, max_steps=300):
        """Type a command, step until the next prompt; return the output text
        (without the echoed command and the prompt), lines split."""
        self.term.take()
        self.term.type(line)
        out = b""
        for _ in range(max_steps):
            self.sim.step()
            time.sleep(0.002)          # let the reader thread empty the pty (loaded host)
            out += self.term.take()
            k = out.find(b"\r\n>>> ")
            if k >= 0:
                # what follows the prompt (e.g. trace lines that the reader
                # thread collected with it) goes back for the next take()
                self.term.put_back(out[k + 6:])
                out = out[:k + 6]
                break
        else:
            raise AssertionError("no prompt after %r: %r" % (line, out[-500:]))
        e = out.find(line.encode() + b"\r\n")
        if e > 0:                      # trace lines still in flight before the echo
            out = out[e:]
        text = out.decode(errors="replace")
        lines = text.split("\r\n")
        assert lines[0] == line, lines[:2]     # the echo
        assert lines[-1] == ">>> "
        body = lines[1:-1]
        for l in body:
            assert len(l) <= 80, "wider than 80 columns: %r" % l
        assert "Traceback" not in text, text
        return body

    def run_slowly(self, ms):
        """Simulated time with pauses, so that the terminal reader keeps up
        with the trace on a loaded host (a full pty makes the firmware drop
        console output, and an undrained trace switches itself off)."""
        for _ in range(ms // self.sim.step_ms):
            self.sim.step()
            time.sleep(0.002)

    def close(self):
        self.sim.close()
        self.term.close()


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    b = Bench(tmp_path_factory.mktemp("diag"))
    try:
        assert b.sim.run_until(lambda: b.stage() == "charging", 20_000), b.sim.texts
        b.sim.run_for(8000)                   # current ramped up to the demand
        yield b
    finally:
        b.close()


def _field(lines, pattern):
    for l in lines:
        m = re.search(pattern, l)
        if m:
            return m
    raise AssertionError("%r not in %r" % (pattern, lines))


def test_help_lists_every_command(bench):
    out = bench.type("help()")
    text = "\n".join(out)
    for name in ("status()", "risks()", "faults(n=20)", "can()", "sched(", "cfg(key=None)",
                 "cfg_set(key, value)", "trace(", "ack()", "reset_estop()", "start()",
                 "stop()", "why()"):
        assert name in text, name
    assert bench.type("help(cfg_set)") == [
        "cfg_set(key, value)  validate + store a setting (next boot/live)"]


def test_status_mid_charge(bench):
    out = bench.type("status()")
    assert _field(out, r"^stage (\w+) for (\d+)\.\d s").group(1) == "charging"
    assert int(_field(out, r"^stage \w+ for (\d+)").group(1)) >= 3
    demand = float(_field(out, r"BMS\s+demand [\d.]+ V ([\d.]+) A").group(1))
    meas = float(_field(out, r"meas .* I ([\d.]+) A").group(1))
    i_set = float(_field(out, r"output\s+power on\s+set [\d.]+ V ([\d.]+) A").group(1))
    assert demand > 10
    assert abs(i_set - demand) <= 0.02 * demand, out   # set-point follows the demand
    assert abs(meas - demand) <= 0.05 * demand, out    # and the output delivers it
    assert "K1/K2 closed (fb closed)" in _field(out, r"^relays.*").group(0)
    assert "lock on (fb on)" in _field(out, r"^relays.*").group(0)
    soc = int(_field(out, r"SOC (\d+) %").group(1))
    assert 50 <= soc <= 60
    assert int(_field(out, r"^energy\s+(\d+) Wh").group(1)) > 0
    assert _field(out, r"^stop\s+(.*)$").group(1) == "-"


def test_can_mid_charge(bench):
    out = bench.type("can()")
    m = _field(out, r"^bus (\S+)\s+rx (\d+)\s+tx (\d+)")
    assert m.group(1) == "active" and int(m.group(2)) > 50 and int(m.group(3)) > 50
    i = [k for k, l in enumerate(out) if l.startswith("last seen")][0]
    seen = " ".join(out[i:i + 2])
    ages = dict(re.findall(r"\b(B[A-Z]{2}) (\d+|-)", seen))
    assert int(ages["BCL"]) <= 60, ages        # BCL every 50 ms
    assert int(ages["BCS"]) <= 260, ages       # BCS every 250 ms
    assert int(ages["BRM"]) > 2000 and ages["BST"] == "-", ages
    assert int(_field(out, r"TP done (\d+)").group(1)) >= 2    # BRM, BCP (+ BCS...)
    assert int(_field(out, r"\bCCS (\d+)").group(1)) > 50


def test_sched_mid_charge(bench):
    out = bench.type("sched()")
    rows = {l.split()[0]: l.split() for l in out[1:] if "ms" in l and not l.startswith("passes")}
    for task in ("protect", "can", "session", "checks", "console"):
        assert task in rows, out
        assert int(rows[task][3]) > 0          # runs
        assert int(rows[task][7]) == 0         # overruns
    assert rows["protect"][1] == "5" and rows["session"][1] == "10"
    assert _field(out, r"^passes (\d+)")


def test_cfg_show_and_refusals(bench):
    out = bench.type('cfg("h8.ma")')
    assert out[0] == "h8.ma = 30"
    assert "range 1..1000" in " ".join(out) and "next boot" in " ".join(out)
    assert bench.type('cfg_set("h8.ma", 5000)') == ["refused: h8.ma = 5000 outside 1..1000 mA"]
    assert bench.type('cfg_set("h8.ma", "x")') == [
        "refused: h8.ma must be an integer (mA), got 'x'"]
    assert bench.type('cfg_set("no.such", 1)') == [
        "refused: unknown setting 'no.such' (cfg() lists them)"]
    # A cross-field rule of the firmware's own validation.
    assert bench.type('cfg_set("h6.derate_t", 950)') == [
        "refused: h6.derate_t must be below h6.trip_t"]
    assert json.loads(bench.cfg_path.read_text()) == {"risk.level.s2": 1, "risk.persist_ms": 1000,
                                                      "console.tx_timeout_ms": 1000}


def test_cfg_set_valid_is_stored_for_next_boot(bench):
    out = bench.type('cfg_set("h8.ma", 25)')
    assert out[0].startswith("h8.ma = 25 stored in ") and "next boot" in " ".join(out)
    assert json.loads(bench.cfg_path.read_text())["h8.ma"] == 25
    assert bench.type('cfg("h8.ma")')[0] == "h8.ma = 30  (next boot 25)"
    out = bench.type("cfg()")                      # what differs from the defaults
    assert out[:4] == ["risk.persist_ms = 1000  (default 5000)",
                       "risk.level.s2 = 1  (default 2)",
                       "h8.ma = 30  (next boot 25)",
                       "console.tx_timeout_ms = 1000  (default 20)"], out
    assert out[4].startswith("groups: ") and "h8(2)" in " ".join(out)
    assert bench.stage() == "charging"     # the session never noticed
    faults = bench.type("faults(3)")
    assert any(re.search(r"operator\s+config h8\.ma", l) for l in faults), faults


def test_cfg_set_live_setting(bench):
    """The trace settings (diagnostics only) apply at once.  They are known
    only if the app imported diag.trace before loading its configuration."""
    if bench.type('cfg("diag.trace_lines")') == ["no setting 'diag.trace_lines'"]:
        pytest.skip("diag.trace not imported by charger.py before config.load")
    out = bench.type('cfg_set("diag.trace_lines", 4)')
    assert out[0].startswith("diag.trace_lines = 4 applied now and stored in"), out
    assert "4 lines/poll" in bench.type("trace()")[0]
    assert bench.type('cfg_set("diag.trace_lines", 0)') == [
        "refused: diag.trace_lines = 0 outside 1..256 lines"]
    bench.type('cfg_set("diag.trace_lines", 16)')       # back to the default
    assert "diag.trace_lines" not in json.loads(bench.cfg_path.read_text())


def test_trace_prints_ccs_frames(bench):
    out = bench.type("trace(True)")
    assert out[0].startswith("trace on")
    bench.run_slowly(500)
    text = bench.term.take().decode(errors="replace")
    lines = [l for l in text.split("\r\n") if l]
    # candump -L format: "(seconds) can0 ID#DATA", firmware clock
    frame = re.compile(r"^\((\d+)\.(\d{3})000\) can0 ([0-9A-F]{8})#((?:[0-9A-F]{2})*)$")
    frames = [frame.match(l) for l in lines]
    assert all(frames), [l for l, f in zip(lines, frames) if not f][:5]
    ccs = [f for f in frames if f.group(3) == "1812F456"]
    assert 8 <= len(ccs) <= 12, len(ccs)       # 500 ms of CCS at 50 ms
    assert all(len(f.group(4)) == 16 for f in ccs)
    assert any(f.group(3) == "181056F4" for f in frames)      # BCL from the BMS
    t = [int(f.group(1)) * 1000 + int(f.group(2)) for f in ccs]
    assert all(45 <= b - a <= 55 for a, b in zip(t, t[1:])), t
    # the copied trace is a candump log: logdecode decodes it
    log = bench.tmp / "trace.log"
    log.write_text("\n".join(lines) + "\n")
    from host_tools.logdecode import decode_file
    names = [r["name"] for r in decode_file(log)]
    assert names.count("CCS") == len(ccs) and "BCL" in names
    assert max(len(l) for l in lines) <= 80
    out = bench.type("trace(False)")
    assert out[-1].startswith("trace off") and " 0 lost" in out[-1]
    bench.run_slowly(200)
    assert b"1812F456" not in bench.term.take()      # off means off


def test_trace_filter_one_message(bench):
    bench.type('trace(True, "BCL")')
    bench.run_slowly(300)
    lines = [l for l in bench.term.take().decode().split("\r\n") if l]
    bench.type("trace(False)")
    assert lines and all(l.split()[2].startswith("181056F4#") for l in lines), lines


def test_why_mid_charge(bench):
    out = bench.type("why()")
    assert out[0] == "session running: stage charging"
    assert not any(l.startswith("start refused") for l in out)


def test_risks_raise_after_injected_deviation(bench):
    out = bench.type("risks()")
    assert out[0] == "trip: none"
    rows = {l.split()[0]: l for l in out if re.match(r"^[SH]-\d+ ", l)}
    assert len(rows) == 13 + 12, rows.keys()         # S-1..13, H-1..12
    assert re.search(r"^H-12 output interlock .* III\s+OK\s+8\s+-", rows["H-12"]), rows["H-12"]
    # Hard protections are evaluated while charging, with value and limit.
    assert re.search(r"\bOK\s+0\s+30\s+mA$", rows["H-8"]), rows["H-8"]
    assert re.search(r"^S-3 .* III\s+OK\s+\d+\s+\d+", rows["S-3"]), rows["S-3"]
    # Inject: the charger's current measurement reads 10 A above what the BMS
    # measures (a sensor fault): S-2 (level I here) goes PENDING, then RAISED
    # after risk.persist_ms (1 s in this configuration).  A step of the
    # output current counts as a ramp for s2.window (1 s): the BMS's
    # measurement may lag that much, so PENDING starts after it.
    i_now = bench.sim.plant.i
    bench.sim.override("i_out", int(i_now * 10) + 100)
    bench.sim.run_for(1200)
    s2 = [l for l in bench.type("risks()") if l.startswith("S-2 ")][0]
    assert " PENDING " in s2, s2
    assert s2.endswith(" 0.1A"), s2                # the unit of value and limit
    value, limit = map(int, s2.split()[-3:-1])   # |I_out - I_BCS| vs 1.5 % of I_out
    assert 90 <= value <= 110 and 10 <= limit <= 15, s2
    bench.sim.run_for(1500)
    out = bench.type("risks()")
    s2 = [l for l in out if l.startswith("S-2 ")][0]
    assert re.search(r"S-2 output current deviation\s+I\s+RAISED\s+(\d+)\s+(\d+)", s2), s2
    value, limit = map(int, s2.split()[-3:-1])
    assert value > limit
    assert _field(out, r"warnings (\d+)").group(1) == "1"
    bench.sim.release("i_out")
    faults = bench.type("faults(5)")
    assert any(re.search(r"risk-raised\s+S-2 output current deviation LI$", l) for l in faults)
    assert bench.stage() == "charging"       # a warning does not stop the session


def test_operator_stop_and_why(bench):
    out = bench.type("stop()")
    assert out == ["stop requested in stage charging: current down, CST, end"]
    bench.sim.run_until(lambda: bench.stage() in ("done", "finish"), 15_000)
    out = bench.type("why()")
    assert _field(out, r"^stopped: (.*?)  \(CST").group(1) == "operator stop"
    assert "(CST reason 0x04" in " ".join(out)                # manual
    out = bench.type("status()")
    assert _field(out, r"^stop\s+(.*)$").group(1) == "operator stop"
    assert "K1/K2 open" in _field(out, r"^relays.*").group(0)
    assert bench.type("stop()") == ["no session running (a pending start is cancelled)"]


def test_trip_listed_in_faults_and_risks(bench):
    bench.sim.override("leakage_ma", 80)           # H-8 residual current: trips at once
    bench.sim.run_for(300)
    out = bench.type("risks()")
    assert out[0].startswith("TRIPPED: H-8 leakage current"), out[0]
    h8 = [l for l in out if l.startswith("H-8 ")][0]
    assert re.search(r"III\s+RAISED\s+80\s+30\s+mA$", h8), h8
    faults = bench.type("faults()")
    assert faults[0].split() == ["seq", "boot", "time", "(UTC)", "event", "detail"]
    trips = [l for l in faults if re.search(r"\btrip\s+H-8 leakage current value 80$", l)]
    assert len(trips) == 1, faults
    assert re.match(r"^\s*\d+ 0\s+2026-01-01 00:00:\d\d trip", trips[0]), trips[0]
    # why(): the refusal a start would meet, with what to do about it.
    out = bench.type("why()")
    assert "protection: tripped: H-8 leakage current" in out
    assert "a start now would be refused: tripped: H-8 leakage current, rearm()" in out
    assert bench.type("rearm()") == [
        "refused: trip sequence running, cause still present or latched (risks())"]
    bench.sim.release("leakage_ma")
    bench.sim.run_for(200)
    assert bench.type("rearm()") == ["rearmed: a new session may start"]
    assert bench.type("risks()")[0] == "trip: none"


def test_estop_latch_and_reset(bench):
    bench.sim.override("estop", 1)
    bench.sim.run_for(200)
    out = bench.type("why()")
    assert "a start now would be refused: E-stop latched: release and reset_estop()" in out
    assert "  -> release the E-stop button, then reset_estop()" in out
    assert bench.type("reset_estop()") == ["refused: the E-stop is still pressed"]
    bench.sim.release("estop")
    bench.sim.run_for(200)
    assert bench.type("reset_estop()") == ["E-stop latch cleared; trip rearmed"]
    assert bench.type("ack()") == ["nothing to acknowledge"]
    out = bench.type("why()")
    assert any(l.startswith("a start now would be allowed") for l in out), out


def test_operator_start_after_session(bench):
    # The BMS simulator has finished, so the new attempt goes as far as the
    # handshake; what matters here is that start() is accepted and logged.
    out = bench.type("start()")
    assert out == ["start requested (stage done); why() tells if it is refused"] or \
        out == ["start requested (stage connected); why() tells if it is refused"], out
    faults = bench.type("faults(4)")
    assert any(re.search(r"operator\s+start", l) for l in faults), faults


def test_fail_safe_is_explained(bench):
    """H-9: an exception in a task forces the outputs safe; the console
    (a separate task) still answers and says what happened."""
    bench.sim.inject_exception()
    bench.sim.run_for(100)
    out = bench.type("why()")
    assert out[0].startswith("HALTED (no session will start): exception: RuntimeError"), out
    assert "  -> the firmware stopped on an exception (H-9): faults(), reboot" in out
    h9 = [l for l in bench.type("risks()") if l.startswith("H-9 ")][0]
    assert " RAISED " in h9, h9
    faults = bench.type("faults(3)")
    assert any(re.search(r"fail-safe\s+exception RuntimeE\.\.$", l) for l in faults), faults
    assert bench.type("start()")[0].startswith("refused: halted: exception: RuntimeError")
