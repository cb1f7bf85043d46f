"""J1939-21 transport protocol: its vocabulary (TP.CM control bytes, Abort
reasons, receiver states, the receiver's error codes with their names) and
the ``tp.*`` timers and limits (settings, ``TpLimits``).

One definition for ``gbt.transport``, ``gbt.tpopen``, the console and the
tests.  (A ``const`` read from another module is a global lookup, not a
folded constant: these are only read on the transfer's control path and
per TP frame, never per fast-path packet.)
"""
from micropython import const
import config

# TP.CM control bytes (J1939-21).
CM_RTS = const(0x10)
CM_CTS = const(0x11)
CM_EOMA = const(0x13)
CM_BAM = const(0x20)
CM_ABORT = const(0xFF)

# Connection Abort reasons (J1939-21), each a private const of the one
# module that sends it (a shared name would cost RAM on the target):
#   1 already in a connection-mode session (tpopen: _AB_BUSY)
#   2 system resources, the message does not fit (tpopen: _AB_RESOURCES)
#   3 a timeout occurred (transport: _AB_TIMEOUT)
#   4 CTS while data transfer in progress (sender side: unused)
#   5 maximum retransmit request limit reached (transport: _AB_RETRANSMIT)
#   6 unexpected data transfer packet (unused)
#   7 bad sequence number (transport: _AB_BAD_SEQ)
#   8 duplicate sequence number (we recover: unused)
#   9 total message size > 1785 bytes (tpopen: _AB_TOO_BIG)
#   250 any other reason (tpopen: _AB_OTHER)

# Session state.
S_IDLE = const(0)
S_CMDT = const(1)   # RTS/CTS connection open
S_BAM = const(2)    # broadcast announce transfer open

STATE_NAMES = ("idle", "rts/cts", "bam")

# ``last_error`` codes: the last reason ``errors`` was incremented.
E_NONE = const(0)
E_DLC = const(1)          # TP frame shorter than 8 bytes that we cannot use
E_ADDR = const(2)         # wrong source / destination address
E_NO_SESSION = const(3)   # TP.DT with no transfer open
E_SEQ = const(4)          # gap / bad sequence number
E_DUP = const(5)          # duplicate TP.DT (ignored)
E_RTS = const(6)          # RTS/BAM size and packet count inconsistent / 0
E_SIZE = const(7)         # message larger than the buffer / max / 1785
E_PGN = const(8)          # PGN not in the allowed list
E_BUSY = const(9)         # RTS/BAM while another transfer is open
E_TIMEOUT = const(10)     # T1 / T2 expired
E_TX = const(11)          # our response could not be sent within Tr
E_UNEXPECTED = const(12)  # CTS/EOMA/unknown control byte/non-TP frame
E_SLOW = const(13)        # transfer outlived its size's time bound (trickle)

ERROR_NAMES = ("none", "dlc", "addr", "no-session", "seq", "dup", "rts",
               "size", "pgn", "busy", "timeout", "tx", "unexpected", "slow")

MAX_TP = const(1785)        # J1939-21: largest TP message (bytes)

_CMAX = const(0x3FFFFFFF)     # counters wrap here: stay small ints


def inc(v):
    """Counter +1 that wraps before leaving the small-int range."""
    return v + 1 if v < _CMAX else 0


def pgn_norm(p):
    """PDU1 PGNs (PF < 240) have no PS in the PGN: clear it, as receivers do
    (some stacks put the destination in the RTS PGN field)."""
    if ((p >> 8) & 0xFF) < 0xF0:
        return p & 0x3FF00
    return p & 0x3FFFF


CONFIG_SCHEMA = (
    ("tp.t1_ms", 750, 50, 10000, "ms",
     "J1939-21 T1: receiver gives up when more than T1 passes between two "
     "TP.DT while more are expected (RTS/CTS and BAM; also BAM -> first DT)"),
    ("tp.t2_ms", 1250, 50, 10000, "ms",
     "J1939-21 T2: receiver gives up when no TP.DT arrives within T2 after "
     "it sent a CTS"),
    ("tp.t3_ms", 1250, 50, 10000, "ms",
     "J1939-21 T3: originator timer (wait for CTS/EndOfMsgAck); the charger "
     "never originates TP, declared for a future sender"),
    ("tp.t4_ms", 1050, 50, 10000, "ms",
     "J1939-21 T4: originator timer (wait after CTS(0) hold); not used by "
     "the receiver"),
    ("tp.tr_ms", 200, 10, 5000, "ms",
     "J1939-21 Tr: our CTS/EndOfMsgAck/Abort must be on the bus within Tr; "
     "a response the CAN driver refused is retried by poll() until Tr"),
    ("tp.cts_window", 255, 1, 255, "packets",
     "Max packets requested per CTS (also limited by RTS byte 5 and the "
     "packets still missing)"),
    ("tp.max_size", 1785, 1, 1785, "bytes",
     "Largest TP message accepted (further limited by the buffer); larger "
     "RTS -> Abort reason 2"),
    ("tp.retries", 2, 0, 10, "-",
     "Retransmission requests (CTS back to the first missing packet) per "
     "transfer on a sequence gap; then Abort reason 5 (0: Abort 7 at once)"),
    ("tp.rts_preempt", 1, 0, 1, "-",
     "RTS for another PGN while a transfer is open: 1 = the new RTS wins, the "
     "open transfer gets Abort reason 1 (kernel j1939 / EN+), noted as an "
     "intrusion; 0 = J1939-21, Abort the new one with reason 1 and keep the "
     "open one"),
    ("tp.total_base_ms", 1250, 0, 60000, "ms",
     "Time bound of a whole transfer = this + packets x tp.total_pkt_ms from "
     "the RTS/BAM (default T2: the first packet after the CTS); past it: "
     "Abort reason 3 (BAM: dropped), noted as an intrusion (TP.DT trickle)"),
    ("tp.total_pkt_ms", 200, 10, 750, "ms",
     "Time allowed per packet in that bound (default: Tr and the J1939-21 "
     "BAM maximum packet spacing; 750 = T1, no tighter than T1 alone)"),
)
config.register(CONFIG_SCHEMA)


class TpLimits:
    """The ``tp.*`` settings of ``cfg`` (a dict or ``config.Settings``;
    missing keys take their registered defaults), ``size``: the receive
    buffer, which also bounds the accepted message size."""

    def __init__(self, cfg, size):
        g = config.get
        self.size = min(size, g(cfg, "tp.max_size"), MAX_TP)
        self.t1 = g(cfg, "tp.t1_ms")
        self.t2 = g(cfg, "tp.t2_ms")
        self.tr = g(cfg, "tp.tr_ms")
        self.window = g(cfg, "tp.cts_window")
        self.retries = g(cfg, "tp.retries")
        self.preempt = g(cfg, "tp.rts_preempt")
        self.base_ms = g(cfg, "tp.total_base_ms")
        self.pkt_ms = g(cfg, "tp.total_pkt_ms")

    def bound_ms(self, packets):
        """Time allowed for a whole transfer of ``packets`` TP.DT."""
        return self.base_ms + packets * self.pkt_ms
