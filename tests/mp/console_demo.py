"""Demo firmware loop with the diagnostics console on stdin/stdout.

Runs a real ``rt.scheduler.Scheduler`` on a ``TicksClock``:
  - "control": 10 ms task (stands in for the session/protection tick)
  - "msg50":   50 ms task that records its real start times (period stats)
  - "console": polls the Console every ``argv[1]`` ms (default 5), taking
               at most ``argv[2]`` input bytes per poll (default 64)
and exposes in the console namespace:
  demo        the ``Demo`` object: ``demo.token`` (random per process
              start: proves the process was never restarted), ``demo.boot_ms``,
              ``demo.stats()`` -> (n, min_ms, max_ms, outside_10pct, control_runs,
              ms since reset),
              ``demo.reset()`` restarts the period statistics
  sched       the scheduler (per-task wcet/overrun counters)
  hello(name) a demo command
Run: MICROPYPATH=boards/unix:firmware:tests/mp micropython tests/mp/console_demo.py
"""
import sys
import time
import os
import micropython
from rt.clock import TicksClock, ticks_diff
from rt.scheduler import Scheduler
from diag.console import Console
import console_io


class Demo:
    def __init__(self, clock):
        self.clock = clock
        self.token = "".join("%02x" % b for b in os.urandom(4))
        self.boot_ms = time.ticks_ms()
        self.control_runs = 0
        self.reset()

    def reset(self):
        self.n = 0
        self.pmin = 1 << 20
        self.pmax = 0
        self.outside = 0      # periods outside 50 ms +- 10 %
        self.last = -1
        self.reset_ms = time.ticks_ms()

    def control(self, now):
        self.control_runs += 1

    def msg50(self, now):
        t = time.ticks_ms()   # real start time, not the scheduled slot
        if self.last >= 0:
            p = ticks_diff(t, self.last)
            self.n += 1
            if p < self.pmin:
                self.pmin = p
            if p > self.pmax:
                self.pmax = p
            if p < 45 or p > 55:
                self.outside += 1
        self.last = t

    def stats(self):
        return (self.n, self.pmin, self.pmax, self.outside, self.control_runs,
                ticks_diff(time.ticks_ms(), self.reset_ms))


def hello(name="engineer"):
    """Demo command."""
    print("hello,", name)
    return len(name)


def main():
    poll_ms = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rx_chunk = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    clock = TicksClock()
    sched = Scheduler(clock)
    demo = Demo(clock)
    io = console_io.stream()
    con = Console(io, {"demo": demo, "sched": sched, "hello": hello, "io": io},
                  cfg={"console.rx_chunk": rx_chunk})
    con_poll = con.poll
    sched.add("control", demo.control, 10)
    sched.add("msg50", demo.msg50, 50, 1)
    sched.add("console", con_poll, poll_ms, 2)
    con.start()
    sched.start()
    run_due = sched.run_due
    next_due = sched.next_due
    sleep_ms = time.sleep_ms
    try:
        while True:
            run_due()
            d = ticks_diff(next_due(), clock.ticks_ms())
            if d > 0:
                sleep_ms(d)
    finally:
        con.close()
        io.close()


main()
