"""Issue 11: the documented commands, run as written, the way a user meets them.

Every command string below is first looked up in README.md / docs/ (the test
fails if the docs no longer say it), then run verbatim: live displays and the
console in tmux (``send-keys`` / ``capture-pane``), the console through the
command that ``make realtime ARGS="--console"`` prints, with the real
``mpremote`` of .venv.  Only a board's port (/dev/ttyACM0) is replaced by
the bench's pseudo-terminal.

The real-time bench listens on the documented fixed port 29536; so that
parallel test runs (or a bench a developer left running) cannot collide, the
tmux server runs in its own network namespace (``unshare -n``, loopback up):
every window of it sees its own 127.0.0.1.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md")))


def documented(cmd):
    """The command as the docs write it (fails if they do not)."""
    assert cmd in DOCS, "not in README.md/docs: %r" % cmd
    return cmd


def _can_unshare():
    if not shutil.which("tmux") or not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return r.returncode == 0


needs_tmux = pytest.mark.skipif(not sys.platform.startswith("linux") or not _can_unshare(),
                                reason="needs tmux and unshare -n (network namespace)")


# a plain shell: no profile may reset PATH; prompt "$ "
SHELL = 'env PS1="$ " bash --noprofile --norc'


class Tmux:
    """A tmux server in its own network namespace; windows start in ``cwd``
    with .venv/bin first on PATH (so ``mpremote`` is the project's)."""

    def __init__(self, cwd):
        self.sock = "ux-%s" % uuid.uuid4().hex[:8]
        self.cwd = str(cwd)
        env = dict(os.environ, PATH="%s:%s" % (VENV_BIN, os.environ.get("PATH", "")),
                   TERM="xterm-256color", PYTHONUNBUFFERED="1")
        env.pop("TMUX", None)
        self.env = env
        subprocess.run(["unshare", "-n", "sh", "-c",
                        "ip link set lo up; exec tmux -L %s -f /dev/null new-session -d -s main "
                        "-x 160 -y 50 -c %s '%s'" % (self.sock, self.cwd, SHELL)],
                       check=True, env=env, timeout=20)
        self.t("set-option", "-g", "history-limit", "20000")
        self.t("set-option", "-g", "remain-on-exit", "on")

    def t(self, *args, check=True):
        return subprocess.run(["tmux", "-L", self.sock] + list(args), capture_output=True,
                              text=True, env=self.env, check=check, timeout=20)

    def window(self, name, cwd=None):
        self.t("new-window", "-d", "-n", name, "-c", str(cwd or self.cwd), SHELL)

    def type(self, name, text, enter=True):
        self.t("send-keys", "-t", "main:" + name, "-l", text)
        if enter:
            self.t("send-keys", "-t", "main:" + name, "Enter")

    def keys(self, name, *keys):
        self.t("send-keys", "-t", "main:" + name, *keys)

    def screen(self, name, history=True):
        args = ["capture-pane", "-p", "-J", "-t", "main:" + name]
        if history:
            args += ["-S", "-"]
        return self.t(*args).stdout

    def wait(self, name, pattern, timeout=30.0, history=True):
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            s = self.screen(name, history)
            m = rx.search(s)
            if m:
                return m
            if time.monotonic() > end:
                raise AssertionError("no %r in window %s after %.0f s:\n%s"
                                     % (pattern, name, timeout, s[-3000:]))
            time.sleep(0.2)

    def kill(self):
        self.t("kill-server", check=False)


def run(cmd, cwd=ROOT, timeout=300):
    env = dict(os.environ, PATH="%s:%s" % (VENV_BIN, os.environ.get("PATH", "")))
    return subprocess.run(cmd, shell=True, cwd=str(cwd), capture_output=True, text=True,
                          timeout=timeout, env=env)


# ---------------------------------------------------------------- real-time bench
@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    work = tmp_path_factory.mktemp("user")
    (work / ".venv").symlink_to(ROOT / ".venv")
    board = ROOT / "out" / "realtime" / "board"
    shutil.rmtree(board, ignore_errors=True)            # a fresh board for this test
    tel = ROOT / "out" / "realtime" / "telemetry.bin"
    if tel.exists():
        tel.unlink()
    tm = Tmux(work)
    try:
        tm.window("bench", cwd=ROOT)
        tm.type("bench", documented('make realtime ARGS="--console"'))
        m = tm.wait("bench", r"console: (mpremote connect (/dev/pts/\d+) resume repl)", 120)
        tm.console_cmd, tm.pts = m.group(1), m.group(2)
        tm.wait("bench", r"stage idle", 30)
        tm.work = work
        yield tm
    finally:
        tm.keys("bench", "C-c")
        try:
            tm.wait("bench", r"bench stopped", 20)
        except AssertionError:
            pass
        tm.kill()


@needs_tmux
def test_item01_console_through_the_printed_command(rt):
    """Item 1 (+11: idle time, why()): the printed mpremote line works."""
    tm = rt
    tm.window("fe")
    tm.type("fe", tm.console_cmd)                                    # verbatim, as printed
    tm.wait("fe", r"Use Ctrl-\] or Ctrl-x to exit this shell", 20)
    tm.type("fe", "status()")
    m = tm.wait("fe", r"stage idle for (\d+)\.\d s", 20)
    assert int(m.group(1)) < 120, "idle time is the host's uptime"  # item 11: since boot
    tm.wait("fe", r"meas .* CC1 6000 mV", 5)
    tm.type("fe", "why()")
    tm.wait("fe", r"no vehicle plugged \(CC1 6000 mV\)", 10)
    tm.type("fe", "help()")
    tm.wait("fe", r"plug\(\)\s+SIL bench: plug the vehicle in", 10)
    tm.keys("fe", "C-]")
    tm.wait("fe", r"\$\s*$", 10, history=False)


@needs_tmux
def test_items03_04_09_12_bms_logger_viewer_decoder_and_plug(rt):
    """A BMS that joins late gets its handshake (item 9: plugged when the
    first program joins; unplug/replug from the bench's terminal); the BMS
    uses frame timestamps on sil (item 4); can.logger records the firmware's
    clock and channel 1 (item 3); can.viewer and the live decoder (item 12)."""
    tm = rt
    time.sleep(3)                                  # the BMS joins seconds after the bench
    tm.window("bms")
    tm.type("bms", documented(".venv/bin/python -m host_tools.bms -i sil -c 127.0.0.1:29536"))
    tm.wait("bms", r"scenario normal: .*, frame timestamps", 20)
    tm.wait("bench", r"a program joined the bus: vehicle plugged in", 20)
    tm.wait("bench", r"stage charging", 40)
    tm.wait("bms", r"charging +SOC", 20)           # the live status line

    tm.window("log")
    tm.type("log", documented(".venv/bin/python -m can.logger -i sil -c 127.0.0.1:29536 -f bus.asc"))
    tm.window("dec")
    tm.type("dec", documented(".venv/bin/python -m host_tools.logdecode -i sil -c 127.0.0.1:29536"))
    tm.window("view")
    tm.type("view", documented(".venv/bin/python -m can.viewer -i sil -c 127.0.0.1:29536"))
    tm.wait("dec", r"C->B CCS +OutputVoltage=", 20)
    tm.wait("dec", r"B->C BCL ", 5)
    tm.wait("view", r"1812F456", 20, history=False)
    time.sleep(2.5)
    tm.keys("log", "C-c")
    tm.keys("view", "q")
    tm.keys("dec", "C-c")
    tm.wait("dec", r"\$\s*$", 10, history=False)
    asc = tm.work / "bus.asc"
    end = time.monotonic() + 10
    while "End TriggerBlock" not in (asc.read_text() if asc.exists() else ""):
        assert time.monotonic() < end, "logger did not finish"
        time.sleep(0.2)
    text = asc.read_text()
    assert "Begin Triggerblock" in text and time.strftime("%Y") in text.split("Begin Triggerblock")[1][:40]
    rows = [l.split() for l in text.splitlines() if re.match(r"\s*\d+\.\d+ 1 +[0-9A-F]+x", l)]
    assert len(rows) > 50
    ts = [float(r[0]) for r in rows]
    ccs = [float(r[0]) for r in rows if r[2] == "1812F456x"]
    # not one timestamp; in delivery order (a firmware frame carries its send
    # time, another node's its arrival: apart by the host's delivery delay)
    assert len(set(ts)) > len(ts) // 2 and max(a - b for a, b in zip(ts, ts[1:])) < 0.1, ts
    gaps = [round((b - a) * 1000) for a, b in zip(ccs, ccs[1:])]
    assert gaps and sum(gaps) / len(gaps) == pytest.approx(50, abs=3), gaps   # the firmware's period
    assert all(r[1] == "1" for r in rows)                               # ASC channel 1

    # unplug / plug from the bench's own terminal: the session ends, a new one starts
    tm.type("bench", "unplug")
    tm.wait("bench", r"unplug: connector pulled", 10)
    tm.wait("bench", r"stop (connector removed|protection trip)", 20)   # live: H-5 trips
    # CC1 open long enough (session.replug_ms): the charger is back in idle
    tm.wait("bench", r"unplug: connector pulled(.|\n)*stage idle", 20)
    n_hs = tm.screen("bench").count("stage handshake")
    tm.type("bench", "plug")
    tm.wait("bench", r"plug: vehicle plugged in", 10)
    end = time.monotonic() + 30
    while tm.screen("bench").count("stage handshake") <= n_hs:
        if time.monotonic() > end:
            Path("/tmp/bench_screen.txt").write_text(tm.screen("bench"))
            raise AssertionError(tm.screen("bench").strip()[-2500:])
        time.sleep(0.3)

    # the BMS ends (the charger stopped at the unplug; else Ctrl-C) with its verdicts
    tm.keys("bms", "C-c")
    tm.wait("bms", r"(PASS|FAIL|NOT RUN): \d+ PASS, \d+ FAIL, \d+ NOT RUN", 20)
    screen = tm.screen("bms")
    assert "Traceback" not in screen
    assert "reaction.cst_after_bst" in screen and "session.statistics" in screen   # names not cut


@needs_tmux
def test_item07_board_filesystem_and_field_commands(rt):
    """Item 7: the SIL board's filesystem looks like a board's flash; the
    README's field commands work verbatim (port = the bench's pty)."""
    tm, pts = rt, rt.pts
    work = tm.work

    def field(cmd):
        r = run(documented(cmd).replace("/dev/ttyACM0", pts), cwd=work, timeout=60)
        assert r.returncode == 0 and "Traceback" not in r.stdout + r.stderr, (cmd, r.stdout, r.stderr)
        return r.stdout

    out = field('mpremote connect /dev/ttyACM0 resume exec "status()"')
    assert out.startswith("stage ")
    out = run("mpremote connect %s resume fs ls" % pts, cwd=work).stdout
    names = out.split()
    assert "state/" in names and "Makefile" not in names and ".git/" not in names, out
    field("mpremote connect /dev/ttyACM0 resume fs cp :state/events.0 .")
    out = field(".venv/bin/python -m host_tools.eventlog events.0")
    assert re.search(r"stage +handshake <- locking", out), out          # item 11: names
    # a config copied onto the board lands in the board's directory, not the checkout
    (work / "site.json").write_text('{"h8.ma": 25}')
    run("mpremote connect %s resume fs cp site.json :config.json" % pts, cwd=work)
    assert json.loads((ROOT / "out/realtime/board/config.json").read_text()) == {"h8.ma": 25}
    assert not (ROOT / "config.json").exists()


@needs_tmux
def test_item11_port_in_use_is_one_line(rt):
    tm = rt
    tm.window("second", cwd=ROOT)
    tm.type("second", ".venv/bin/python -m host_tools.sil; echo rc=$?")
    m = tm.wait("second", r"rc=(\d+)", 30)
    s = tm.screen("second")
    assert m.group(1) == "2" and "Traceback" not in s
    assert "error: port 29536 is in use (another bench running?)" in s


@needs_tmux
def test_zz_bench_stops_and_telemetry_collects_once(rt):
    """Item 12: telemetry written by make realtime; item 11: collect twice."""
    tm = rt
    tm.keys("bench", "C-c")
    tm.wait("bench", r"bench stopped; board filesystem .*, telemetry .*\((\d+) records\)", 30)
    assert "Traceback" not in tm.screen("bench")
    tel = ROOT / "out" / "realtime" / "telemetry.bin"
    assert tel.stat().st_size > 0
    db = tm.work / "site.sqlite"
    cmd = documented("python -m host_tools.telemetry collect tel.bin --db site.sqlite")
    cmd = ".venv/bin/" + cmd.replace("tel.bin", str(tel))
    r1 = run(cmd, cwd=tm.work)
    r2 = run(cmd, cwd=tm.work)
    n = int(re.search(r": (\d+) records", r1.stdout).group(1))
    assert n > 0 and r1.returncode == 0
    assert re.search(r": 0 records \(%d already in site.sqlite, not added again\)" % n, r2.stdout), r2.stdout
    out = run(".venv/bin/python -m host_tools.telemetry summary --db site.sqlite", cwd=tm.work).stdout
    assert out.count("session ") == len(set(re.findall(r"session (\d+):", out)))
    assert db.exists()


# ---------------------------------------------------------------- make charge
@pytest.fixture(scope="module")
def charge(tmp_path_factory):
    """``make charge`` in a terminal (tmux): the live display, then the files."""
    if not _can_unshare():
        pytest.skip("needs tmux")
    tm = Tmux(ROOT)
    try:
        tm.window("charge")
        tm.type("charge", documented("make charge") + "; echo rc=$?")
        tm.wait("charge", r"remaining +\d+:\d\d simulated, about \d+:\d\d here", 180, history=False)
        live = tm.screen("charge", history=False)
        rc = tm.wait("charge", r"rc=(\d+)", 600).group(1)
        yield {"live": live, "out": tm.screen("charge"), "rc": rc}
    finally:
        tm.kill()


@needs_tmux
def test_items10_12_make_charge_live_and_files(charge):
    assert charge["rc"] == "0", charge["out"][-3000:]
    live = charge["live"]
    assert re.search(r"SOC +\[#{12,}\.+\] +\d+\.\d %  \(target 90 %\)", live), live     # item 10: the bar
    assert re.search(r"stage +charging", live) and "sim time" in live, live
    out = charge["out"]
    assert "BMS verdict" in out and "│ PASS" in out
    assert re.search(r"CST \(first\) +│ at \d+\.\d s: 40 00 F0 F0 +\(BmsStopped=active\)", out)
    assert "(2313" not in out and "[]" not in out                      # no Python reprs
    assert re.search(r"current +│ current \d+ A: limited by charger power rating.max_p", out)
    assert re.search(r"inrush at K1/K2 +│ \d+\.\d A \(pre-charge matched", out)
    d = ROOT / "out" / "charge"
    for n in ("session.log", "session.asc", "session.png", "summary.json", "report.txt", "junit.xml",
              "telemetry.bin", "board/state/events.0"):
        assert (d / n).stat().st_size > 0, n
    s = json.loads((d / "summary.json").read_text())
    checks = {c["name"]: c["verdict"] for c in s["checks"]}
    assert checks["reaction.current_ramp_after_bst"] == "PASS"           # item 11: CCS after BST
    assert checks["reaction.current_after_cst"] == "PASS"
    assert s["bms_verdict"] == "PASS" and s["charged"] and s["telemetry_records"] > 0
    assert '<testcase classname="gbt27930.charger.reaction" name="reaction.current_ramp_after_bst"' \
        in (d / "junit.xml").read_text()
    # the README's log command through a pipe that closes early (item 11)
    r = run(documented(".venv/bin/python -m host_tools.logdecode out/charge/session.log") + " | head -3")
    assert r.stdout.count("\n") == 3 and "Traceback" not in r.stderr and "CHM" in r.stdout, r.stderr


def test_item05_charge_with_a_bad_config_says_why(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"h8.ma": 5000}')
    out = tmp_path / "out"
    r = run('make charge ARGS="--config %s --out %s"' % (bad, out), timeout=300)
    text = r.stdout + r.stderr
    assert r.returncode != 0 and "Traceback" not in text
    assert "the charger refused to start: bad configuration: h8.ma = 5000 outside 1..1000 mA" in text
    assert re.search(r"BMS verdict +│ NOT RUN \(nothing was charged\)", text), text
    assert "charge FAILED: the charger refused to start" in text
    s = json.loads((out / "summary.json").read_text())
    assert s["bms_verdict"] == "NOT RUN" and not s["charged"]
    assert s["did_not_charge_because"].startswith("the charger refused to start: bad configuration")


def test_item08_one_vocabulary_and_argparse_errors(tmp_path):
    for cmd in (".venv/bin/python -m host_tools.bms --chemistry XYZ",
                'make charge ARGS="--chemistry XYZ"',
                'make realtime ARGS="--chemistry XYZ"'):
        r = run(cmd)
        assert "Traceback" not in r.stderr and "unknown chemistry 'XYZ' (choose from LFP, LTO, NCM)" \
            in r.stderr, (cmd, r.stderr)
    for cmd in (".venv/bin/python -m host_tools.bms --scenario nope --duration 0.1",
                'make charge ARGS="--scenario nope"', 'make realtime ARGS="--scenario nope"'):
        r = run(cmd)
        assert "no scenario file or built-in scenario 'nope' (built-in: bcl_delayed" in r.stderr, r.stderr
    for tool in ("host_tools.bms", "host_tools.charge", "host_tools.sil"):
        h = run(".venv/bin/python -m %s --help" % tool).stdout
        for flag in ("--chemistry", "--soc", "--target-soc", "--capacity-ah", "--capacity-kwh",
                     "--cells", "--temp-c", "--scenario NAME|FILE", "--params"):
            assert flag in h, (tool, flag)
    # the README's own example, by name and with the new names (a short run)
    r = run(documented('make charge ARGS="--soc 20 --target-soc 80 --chemistry NCM\n--capacity-kwh 75"')
            .replace("\n", " ").replace('ARGS="', 'ARGS="--max-minutes 0.2 --no-live --scenario bcl_delayed '
                                         '--out %s ' % (tmp_path / "o")), timeout=300)
    assert "NCM 75 kWh" in r.stdout and "Traceback" not in r.stderr, r.stdout + r.stderr


def test_item02_bms_help_and_item11_cli_edges(tmp_path):
    r = run(".venv/bin/python -m host_tools.bms --help")
    assert r.returncode == 0 and "start SOC, %" in r.stdout, r.stderr
    r = run(".venv/bin/python -m host_tools.logdecode %s --only FOO"
            % (ROOT / "tests" / "data" / "missing.log"))
    assert r.returncode == 2 and "--only: unknown message name(s) FOO" in r.stderr
    r = run("make help")
    assert r.returncode == 0 and "make charge" in r.stdout and "make realtime" in r.stdout
    r = run("make -n clean")
    assert "out" in r.stdout.split()
    js = tmp_path / "v.xml"
    r = run(documented(".venv/bin/python -m host_tools.bms --list-scenarios") + " | head -2")
    assert r.stdout.count("\n") == 2 and "Traceback" not in r.stderr
    r = run(".venv/bin/python -m host_tools.bms --duration 0.3 --no-live --junit %s" % js)
    assert r.returncode == 3 and "NOT RUN: 0 PASS, 0 FAIL" in r.stdout and "no charger frame seen" in r.stdout
    assert "session.no_bem          NOT RUN" in r.stdout                # plain lines, not cut
    n = int(re.search(r"(\d+) NOT RUN \(no charger", r.stdout).group(1))
    assert 'tests="%d" failures="0" skipped="%d"' % (n, n) in js.read_text()
