"""J1939-21 transport timers and limits: their settings and the receiver's
copy of them (``TpLimits``), read once when a ``TransportReceiver`` is made.

Apart from ``gbt.transport`` because they are one concept (what the
standard and this product allow a peer), read on the transfer's opening
and window edges only, never per packet.
"""
import config

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


_MAX_TP = 1785      # J1939-21: largest TP message


class TpLimits:
    """The ``tp.*`` settings of ``cfg`` (a dict or ``config.Settings``;
    missing keys take their registered defaults), ``size``: the receive
    buffer, which also bounds the accepted message size."""

    def __init__(self, cfg, size):
        g = config.get
        self.size = min(size, g(cfg, "tp.max_size"), _MAX_TP)
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
