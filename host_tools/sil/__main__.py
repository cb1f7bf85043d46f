"""Run the SIL bench in real time so other programs can join its CAN bus.

    python -m host_tools.sil [--port 29536] [--bms] [--console] [--config FILE]

The firmware runs on wall-clock time against the plant model; the bus is
served on 127.0.0.1:PORT.  Any python-can program joins with::

    can.Bus(interface="sil", channel="127.0.0.1:29536")

for example our BMS simulator (``python -m host_tools.bms -i sil -c 127.0.0.1:29536``),
``python -m can.viewer -i sil -c 127.0.0.1:29536`` or ``python -m can.logger
-i sil -c 127.0.0.1:29536 -f bus.asc``.  ``--bms`` also runs our BMS simulator
inside the bench.  ``--console`` puts the firmware's console on a new
pseudo-terminal and prints its path for ``mpremote connect PATH``.
Ctrl-C stops the bench (the firmware's outputs go safe first).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from host_tools.bms.battery import BatteryPack
from host_tools.bms.params import BmsParams
from host_tools.sil import Plant, RealtimeBench


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.sil", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=29536, help="TCP port on 127.0.0.1 for python-can clients")
    ap.add_argument("--bms", action="store_true", help="run our BMS simulator inside the bench")
    ap.add_argument("--console", action="store_true", help="serve the firmware console on a pseudo-terminal")
    ap.add_argument("--config", default=None, help="firmware configuration JSON")
    ap.add_argument("--soc", type=float, default=50.0, help="battery start SOC %%")
    ap.add_argument("--capacity-ah", type=float, default=150.0)
    ap.add_argument("--cells", type=int, default=96)
    ap.add_argument("--state", default="out/realtime-state", help="firmware state directory")
    ap.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0 = until Ctrl-C)")
    a = ap.parse_args(argv)
    params = BmsParams(soc=a.soc, capacity_ah=a.capacity_ah, cells=a.cells).resolved()
    pack = BatteryPack(params.chemistry, params.capacity_ah, params.cells, params.soc)
    os.makedirs(a.state, exist_ok=True)
    slave = None
    if a.console:
        master, slave = os.openpty()
        print("console: mpremote connect %s resume repl" % os.ttyname(slave))
    bench = RealtimeBench(port=a.port, plant=Plant(pack), config=a.config, console_fd=slave,
                          state_dir=a.state)
    print("SIL bench running in real time; CAN bus at interface='sil' channel='127.0.0.1:%d'" % bench.port)
    bms = None
    if a.bms:
        from host_tools.bms.simulator import BmsSimulator
        import can
        bms = BmsSimulator(can.Bus(interface="sil", channel="127.0.0.1:%d" % bench.port), params,
                           pack=pack, drive_pack=False)
        bench.hooks.append(bms.poll)
    t0 = time.monotonic()
    seen = 0
    try:
        while not a.duration or time.monotonic() - t0 < a.duration:
            time.sleep(0.2)
            for t_ms, text in bench.texts[seen:]:
                print("%8.3f  %s" % (t_ms / 1000.0, text))
            seen = len(bench.texts)
            if not bench.running:
                print("firmware link closed")
                break
    except KeyboardInterrupt:
        pass
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
