"""Clocks.  All protocol timeouts and persistence timers read one of these.

``TicksClock`` is the board clock (``time.ticks_ms``).  ``SimClock`` is
advanced by the SIL harness in lock-step, so a simulated hour runs in
seconds and every run is repeatable.  Both expose the ``ticks_*`` API so
code is written once with wrap-around-safe arithmetic (``ticks_diff``).

``cpu_us()`` is always real time: it measures execution cost (WCET), which
is a property of the CPU, not of simulated time.
"""
import time

ticks_diff = time.ticks_diff
ticks_add = time.ticks_add
cpu_us = time.ticks_us


class TicksClock:
    """Wall-clock time on a board."""

    simulated = False

    def ticks_ms(self):
        return time.ticks_ms()


class SimClock:
    """Simulated milliseconds, moved only by ``advance_to``.

    Sim time starts at 0 and stays far below the small-int limit (2**30 ms
    is 12 days), so it never allocates and never wraps in a test."""

    simulated = True

    def __init__(self, start_ms=0):
        self.ms = start_ms

    def ticks_ms(self):
        return self.ms

    def advance_to(self, ms):
        if ms > self.ms:
            self.ms = ms
