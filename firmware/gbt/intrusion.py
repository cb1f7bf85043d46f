"""CAN intrusion monitor: bus behaviour a legitimate BMS does not show.

A GB/T 27930 bus has two nodes and a fixed message order, so some patterns
are evidence of a fault or an attack rather than of a vehicle: a BCP after
the parameter stage (it would rewrite the safety limits), a TP.DT trickle
that holds the only transport channel, a new RTS that tries to replace an
open transfer, a stage message outside its stage.  The protocol layer
decides what to *do* (ignore, abort, stop); this object only *records*
that it happened: one counter per kind (console, telemetry) and a small
ring of recent events that the application drains into the event log.

``note`` is called on the CAN/session hot path: it allocates nothing
(preallocated lists, small ints) and never raises.
"""
from micropython import const

# Kinds (append only: the numbers are written into event logs).
IX_BCP_LATE = const(1)        # BCP after the parameter stage (ignored)
IX_BRM_LATE = const(2)        # BRM after recognition (ignored)
IX_TP_TRICKLE = const(3)      # transfer exceeded the time its size allows
IX_TP_PREEMPT = const(4)      # RTS for another PGN while a transfer was open
IX_STAGE_MSG = const(5)       # a BMS stage message outside its stage
IX_FOREIGN = const(6)         # frame from an unexpected source address (arg: CAN id)
IX_PGN = const(7)             # from the BMS: a PGN GB/T 27930 does not have, or PDU2 /
                              # another destination (arg: PGN or CAN id)
IX_RATE = const(8)            # a BMS message far faster than its period (arg: PGN)
IX_PHYSICS = const(9)         # BMS values jumping faster than a pack can (arg: PHY_*)
N_KINDS = const(10)

# IX_PHYSICS arguments: which value jumped (gbt.ixwatch)
PHY_REQ_V = const(1)          # BCL demand voltage
PHY_MEAS_V = const(2)         # BCS measured voltage
PHY_SOC = const(3)            # BCS SOC
PHY_TEMP = const(4)           # BSM highest temperature

NAMES = ("?", "bcp-late", "brm-late", "tp-trickle", "tp-preempt",
         "stage-msg", "foreign-sa", "unexpected-pgn", "rate", "physics")

_RING = const(8)


class IntrusionMonitor:
    def __init__(self):
        self.count = [0] * N_KINDS     # per kind since boot
        self.seq = 0                   # events noted so far (ring position)
        self._t = [0] * _RING
        self._kind = [0] * _RING
        self._arg = [0] * _RING

    def note(self, now, kind, arg=0):
        """Record one event of ``kind`` (``arg``: a PGN, a stage, an address)."""
        if 0 < kind < N_KINDS:
            self.count[kind] += 1
        i = self.seq % _RING
        self._t[i] = now
        self._kind[i] = kind
        self._arg[i] = arg
        self.seq += 1

    def oldest(self):
        """Sequence number of the oldest event still in the ring."""
        return self.seq - _RING if self.seq > _RING else 0

    def read(self, s, out):
        """Event number ``s`` into ``out`` = [t, kind, arg]; False if gone."""
        if s < self.oldest() or s >= self.seq:
            return False
        i = s % _RING
        out[0] = self._t[i]
        out[1] = self._kind[i]
        out[2] = self._arg[i]
        return True

    def total(self):
        n = 0
        for c in self.count:
            n += c
        return n


def name(kind):
    return NAMES[kind] if 0 <= kind < N_KINDS else "?"
