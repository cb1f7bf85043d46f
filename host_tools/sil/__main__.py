"""Run the SIL bench in real time so other programs can join its CAN bus.

    make realtime ARGS="--console"          # = python -m host_tools.sil --console

The firmware runs on wall-clock time against the plant model; the bus is
served on 127.0.0.1:PORT.  Any python-can program joins with::

    can.Bus(interface="sil", channel="127.0.0.1:29536")

for example our BMS simulator (``python -m host_tools.bms -i sil -c 127.0.0.1:29536``),
``python -m can.viewer -i sil -c 127.0.0.1:29536`` or ``python -m can.logger
-i sil -c 127.0.0.1:29536 -f bus.asc``.  ``--bms`` also runs our BMS simulator
inside the bench.  ``--console`` puts the firmware's console on a new
pseudo-terminal and prints the ``mpremote connect /dev/pts/N ...`` command.

The SIL board's filesystem is ``--board-dir`` (default out/realtime/board):
``config.json`` and ``state/`` as on a board's flash; ``--config FILE`` is
copied into it as ``config.json``.  The vehicle is plugged in when the first
program joins the bus (``--plug join``, the default without ``--bms``), at
start (``--plug start``, the default with ``--bms``) or only when asked
(``--plug manual``).  Type ``plug`` / ``unplug`` (Enter) in this terminal,
or ``plug()`` / ``unplug()`` at the firmware console, to move the connector.
Telemetry records go to ``--telemetry`` (default out/realtime/telemetry.bin).
The battery options (``--soc``, ``--chemistry``, ...) set the plant's pack
(and the ``--bms`` simulator); they and their defaults are the BMS
simulator's, so give an external BMS simulator the same ones.
Ctrl-C (or ``quit``) stops the bench (the firmware's outputs go safe first).
"""
from __future__ import annotations

import argparse
import errno
import os
import select
import signal
import sys
import time
from pathlib import Path

from host_tools import clitools
from host_tools.bms import options
from host_tools.bms.battery import BatteryPack
from host_tools.sil import Plant, RealtimeBench
from host_tools.sil.link import open_console_pty, prepare_board_dir

# The bench's battery (the plant's pack) takes the BMS simulator's options
# and defaults: an external BMS simulator started with the same options
# reports the pack the plant charges (else S-5 sees two voltages).
DEFAULTS: dict = {}
KEYS_HELP = "type plug, unplug, status or quit (Enter)"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m host_tools.sil", description=__doc__.split("\n\n")[0],
                                 epilog="make realtime ARGS=\"...\" passes these options.")
    ap.add_argument("--port", type=int, default=29536, help="TCP port on 127.0.0.1 for python-can clients "
                    "(default 29536; 0 = any free port)")
    ap.add_argument("--bms", action="store_true", help="run our BMS simulator inside the bench")
    ap.add_argument("--console", action="store_true", help="serve the firmware console on a pseudo-terminal")
    ap.add_argument("--config", default=None, help="firmware configuration JSON, copied to the board as config.json")
    ap.add_argument("--board-dir", default="out/realtime/board",
                    help="the SIL board's filesystem (config.json, state/) (default out/realtime/board)")
    ap.add_argument("--plug", choices=("join", "start", "manual"), default=None,
                    help="when the vehicle is plugged in: when the first program joins the bus (join, "
                         "default), at start (start, default with --bms) or on 'plug' only (manual)")
    ap.add_argument("--telemetry", default="out/realtime/telemetry.bin",
                    help="file for the firmware's telemetry records (host_tools.telemetry collect)")
    ap.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0 = until Ctrl-C)")
    options.add_options(ap, DEFAULTS, checks=False)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        params = options.make_params(a, DEFAULTS, a.scenario).resolved()
    except ValueError as e:
        ap.error(str(e))
    if a.config and not os.path.isfile(a.config):
        ap.error("--config %s: no such file" % a.config)
    params.checks.timestamps = "frame"          # the firmware's clock (see --timestamps of the BMS tool)
    plug_mode = a.plug or ("start" if a.bms else "join")
    pack = BatteryPack(params.chemistry, params.capacity_ah, params.cells, params.soc,
                       params.resistance_ohm, params.soc_spread_pct, params.capacity_spread_pct,
                       params.seed, params.ambient_c, params.temp_c, params.probes)
    board = prepare_board_dir(a.board_dir, a.config)
    tel_path = Path(a.telemetry)
    tel_path.parent.mkdir(parents=True, exist_ok=True)
    master = slave = None
    if a.console:
        master, slave, pty_path = open_console_pty()
    try:
        bench = RealtimeBench(port=a.port, plant=Plant(pack), console_fd=master, board_dir=board,
                              plugged=plug_mode == "start")
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            print("error: port %d is in use (another bench running?): stop it, or choose another "
                  "port with --port N" % a.port, file=sys.stderr)
        else:
            print("error: cannot start the bench: %s" % e, file=sys.stderr)
        return 2
    except RuntimeError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    finally:
        if master is not None:
            os.close(master)                # the firmware process holds it now
    chan = "127.0.0.1:%d" % bench.port
    print("SIL bench running in real time; CAN bus at interface='sil' channel='%s'" % chan)
    cfg = board / "config.json"
    print("board filesystem: %s (config.json: %s)" % (
        board, ("from %s" % a.config) if a.config else ("present" if cfg.exists() else "none, defaults")))
    if a.console:
        print("console: mpremote connect %s resume repl" % pty_path)
    print("telemetry: %s" % tel_path)
    print({"start": "vehicle plugged in",
           "join": "vehicle plugged in when the first program joins the bus (e.g. "
                   "python -m host_tools.bms -i sil -c %s)" % chan,
           "manual": "vehicle not plugged in: type plug"}[plug_mode])
    interactive = sys.stdin.isatty()
    if interactive:
        print(KEYS_HELP)
    sys.stdout.flush()

    bms_state = {"sim": None, "bus": None}

    def start_bms():
        from host_tools.bms.simulator import BmsSimulator
        import can
        if bms_state["bus"] is None:
            bms_state["bus"] = can.Bus(interface="sil", channel=chan)
        else:
            while bms_state["bus"].recv(0) is not None:     # frames of the old session
                pass
        sim = BmsSimulator(bms_state["bus"], params, pack=pack, drive_pack=False, scenario=a.scenario,
                           apply_scenario_params=False)
        old = bms_state["sim"]
        if old is not None and old.poll in bench.hooks:
            bench.hooks.remove(old.poll)
        bms_state["sim"] = sim
        bench.hooks.append(sim.poll)

    if a.bms:
        start_bms()
        bench.plug_listeners.append(lambda on: start_bms() if on else None)
    if plug_mode == "join":
        def on_join():
            if not bench.plugged:
                print("a program joined the bus: vehicle plugged in")
                bench.plug()
        bench.server.on_join = on_join

    # SIGTERM (kill, tmux kill-session) ends like Ctrl-C: outputs safe first.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    tel = open(tel_path, "ab")
    t0 = time.monotonic()
    seen = n_tel = 0
    try:
        while not a.duration or time.monotonic() - t0 < a.duration:
            if interactive:
                r, _, _ = select.select([sys.stdin], [], [], 0.2)
                if r:
                    cmd = sys.stdin.readline().strip().lower()
                    if cmd in ("quit", "exit", "q") or cmd == "" and sys.stdin.closed:
                        break
                    if cmd == "plug":
                        print("plug: vehicle plugged in" if not bench.plugged else "already plugged in")
                        bench.plug()
                    elif cmd == "unplug":
                        print("unplug: connector pulled" if bench.plugged else "already unplugged")
                        bench.unplug()
                    elif cmd == "status":
                        st = [t for _, t in list(bench.texts) if t.startswith("stage ")]
                        print("stage %s, vehicle %s, %d telemetry records" % (
                            st[-1][6:] if st else "?", "plugged in" if bench.plugged else "unplugged", n_tel))
                    elif cmd:
                        print("unknown command %r: %s" % (cmd, KEYS_HELP))
            else:
                time.sleep(0.2)
            texts = list(bench.texts)
            for t_ms, text in texts[seen:]:
                if text.startswith("bench "):
                    continue
                print("%8.3f  %s" % (bench.bench_s(t_ms), text))
            seen = len(texts)
            recs = list(bench.telemetry)
            if len(recs) > n_tel:
                tel.write(b"".join(r for _, r in recs[n_tel:]))
                tel.flush()
                n_tel = len(recs)
            sys.stdout.flush()
            if not bench.running:
                print("firmware link closed")
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        bench.hooks.clear()
        bench.close()
        if bms_state["bus"] is not None:
            bms_state["bus"].shutdown()
        if slave is not None:
            os.close(slave)
        tel.close()
    sim = bms_state["sim"]
    if sim is not None:
        from host_tools.bms.checks import overall
        rep = sim.report()
        print("BMS simulator: %s (%s)" % (overall(rep), sim.status_line()))
        for r in rep:
            if r.verdict == "FAIL":
                print("  FAIL %s: %s (limit %s) %s" % (r.name, r.measured, r.limit, r.detail))
    print("bench stopped; board filesystem %s, telemetry %s (%d records)" % (board, tel_path, n_tel))
    return 0


if __name__ == "__main__":
    clitools.run(main)
