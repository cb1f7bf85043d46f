"""The intrusion monitor's once-a-second look at the bus (issue 13, C-4).

The protocol layer notes what it sees as it happens (late BCP/BRM, TP
trickle and preemption, BST/BEM outside their stage: ``gbt.intrusion``).
What needs counting over time is looked at here, from the app's slow task
(``sched.slow_ms``, 1 s), on counters the link's receive loop keeps
anyway (``BmsLink.ixc``), so the CAN path pays a counter increment per
frame and nothing else:

* foreign-sa      frames from a source address other than the BMS (0xF4);
* unexpected-pgn  from the BMS: PDU2 or another destination, or a PGN that
                  GB/T 27930 does not define;
* rate            a BMS message more often than ``ix.rate_x`` times its
                  period allows (+ a margin of 4), e.g. a flood of BCL;
* physics         while charging: the demand voltage (BCL), the measured
                  voltage or SOC (BCS) or the highest temperature (BSM)
                  moving faster than a pack can (``ix.*_per_s``).

At most one event per kind per look (the counters keep every frame).
Allocation-free; ~1-3 kinstr per look on the target (docs/security.md).
"""
import micropython
from array import array
from micropython import const
import config
from gbt.intrusion import (IX_FOREIGN, IX_PGN, IX_RATE, IX_PHYSICS, PHY_REQ_V,
                           PHY_MEAS_V, PHY_SOC, PHY_TEMP)
from gbt.link import IXC_FOREIGN, IXC_NOTUS

CONFIG_SCHEMA = (
    ("ix.rate_x", 3, 2, 100, "x",
     "Intrusion monitor: a BMS message counted more than this many times what its period "
     "allows in a second (+4) is a rate anomaly"),
    ("ix.dv_per_s", 1000, 100, 15000, "0.1 V/s",
     "Intrusion monitor: BCL demand or BCS measured voltage moving faster than this while "
     "charging is a physics anomaly"),
    ("ix.dsoc_per_s", 5, 1, 100, "%/s",
     "Intrusion monitor: SOC (BCS) moving faster than this while charging"),
    ("ix.dtemp_per_s", 10, 1, 200, "C/s",
     "Intrusion monitor: highest battery temperature (BSM) moving faster than this"),
)
config.register(CONFIG_SCHEMA)

_N_PF = const(0x28)
_NA = const(-1)
_WRAP = const(0x3FFFFFFF)
_HALF = const(0x20000000)

# Nominal messages per second of each BMS PF (GB/T 27930-2015 table of
# periods); 0 = not a BMS message (any count is already another kind).
_PER_S = {0x27: 4, 0x02: 4, 0x06: 2, 0x09: 4, 0x10: 20, 0x11: 4, 0x13: 4,
          0x15: 1, 0x16: 1, 0x17: 1, 0x19: 100, 0x1C: 4, 0x1E: 4}


@micropython.viper
def _rate(c: ptr32, last: ptr32, lim: ptr32, dt: int) -> int:
    """First PF whose count grew by more than ``lim[pf] * dt / 1000 + 4``
    since ``last`` (-1: none); copies the counts into ``last``."""
    hit = -1
    pf = 0
    while pf < _N_PF:
        d = (c[pf] - last[pf]) & _WRAP
        last[pf] = c[pf]
        if lim[pf] and d > (lim[pf] * dt) // 1000 + 4 and hit < 0:
            hit = pf
        pf += 1
    return hit


class IxWatch:
    def __init__(self, link, bms, cfg=None):
        self.link = link
        self.bms = bms
        self.ix = link.ix
        x = config.get(cfg, "ix.rate_x")
        self._lim = array("i", [0] * _N_PF)
        for pf in _PER_S:
            self._lim[pf] = _PER_S[pf] * x
        self._last = array("i", [0] * _N_PF)
        self._foreign = 0
        self._notus = 0
        self._unknown = 0
        self._t = -1
        self.dv = config.get(cfg, "ix.dv_per_s")
        self.dsoc = config.get(cfg, "ix.dsoc_per_s")
        self.dtemp = config.get(cfg, "ix.dtemp_per_s")
        self._rv = self._mv = self._soc = self._tmp = _NA

    def tick(self, now, charging):
        link = self.link
        c = link.ixc
        ix = self.ix
        if c[IXC_FOREIGN] != self._foreign:
            self._foreign = c[IXC_FOREIGN]
            ix.note(now, IX_FOREIGN, c[IXC_FOREIGN + 1])
        if c[IXC_NOTUS] != self._notus:
            self._notus = c[IXC_NOTUS]
            ix.note(now, IX_PGN, c[IXC_NOTUS + 1])
        if link.unknown != self._unknown:
            self._unknown = link.unknown
            ix.note(now, IX_PGN, link.unknown_pgn)
        dt = 1000 if self._t < 0 else ((now - self._t + _HALF) & _WRAP) - _HALF
        self._t = now
        if dt < 1000:
            dt = 1000
        pf = _rate(c, self._last, self._lim, dt)
        if pf >= 0:
            ix.note(now, IX_RATE, pf << 8)
        if charging:
            self._physics(now, dt)
        else:
            self._rv = self._mv = self._soc = self._tmp = _NA

    def _physics(self, now, dt):
        b = self.bms
        k = dt // 1000
        if _jump(self._rv, b.req_v, self.dv * k):
            self.ix.note(now, IX_PHYSICS, PHY_REQ_V)
        elif _jump(self._mv, b.meas_v, self.dv * k):
            self.ix.note(now, IX_PHYSICS, PHY_MEAS_V)
        elif _jump(self._soc, b.soc, self.dsoc * k):
            self.ix.note(now, IX_PHYSICS, PHY_SOC)
        elif _jump(self._tmp, b.temp_max, self.dtemp * k):
            self.ix.note(now, IX_PHYSICS, PHY_TEMP)
        self._rv = b.req_v
        self._mv = b.meas_v
        self._soc = b.soc
        self._tmp = b.temp_max


def _jump(a, b, lim):
    if a == _NA or b == _NA:
        return False
    d = b - a
    return d > lim or -d > lim
