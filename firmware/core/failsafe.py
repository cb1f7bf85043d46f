"""H-9 state the app keeps: how many exceptions forced the outputs safe
(``count``; only the first is logged), and, since after a fail-safe the
session object may be broken, the app itself tells the vehicle: CST "fault / other" every 10 ms for 10 s (as
DN4002), from the protection task that holds the outputs safe."""
from rt.clock import ticks_diff, ticks_add
from gbt.enc import enc_cst, CST_R_FAULT, CST_F_OTHER
from gbt.ids import ID_CST


class FailSafeCst:
    def __init__(self, send):
        self._send = send
        self.buf = bytearray(8)
        enc_cst(self.buf, CST_R_FAULT, CST_F_OTHER, 0)
        self.count = 0                    # H-9 exceptions (the first one is logged)
        self.t0 = -1                      # start of the 10 s; -1 = not sending
        self.last = 0

    def start(self, now):
        self.t0 = now
        self.last = ticks_add(now, -10)   # the first one at the next tick

    def tick(self, now):
        el = ticks_diff(now, self.t0)
        if el > 10000:
            self.t0 = -1
        elif ticks_diff(now, self.last) >= 10:
            self.last = now
            self._send(ID_CST, self.buf, 4)
