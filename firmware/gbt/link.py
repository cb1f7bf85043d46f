"""J1939 link to the BMS: address filter, transport, decode, dispatch.

``BmsLink.on_frame(now, frame)`` is called by the CAN task for every frame
the board received (``frame`` is a ``board.CanFrame``).  It

1. keeps only PDU1 frames from the BMS (SA 0xF4) to the charger (DA 0x56,
   or global 0xFF); everything else is counted in ``ignored`` (GB/T 27930
   has two nodes; a third talker is diagnostic information, not input).
   The priority bits are not checked (J1939: priority is no part of the
   PGN, a receiver must accept any);
2. hands TP.CM / TP.DT to the ``TransportReceiver`` (which answers CTS /
   EndOfMsgAck / Abort itself) and, when a multi-packet message completes,
   decodes the reassembled buffer;
3. decodes single-frame messages in place (``gbt.messages.decode``);
   a BRM or BCP only if the session's gate (``set_gate``) accepts it
   first: these two carry the vehicle identity and the limits the safety
   checks compare against, so one that arrives outside its stage must not
   reach ``BmsData`` at all (it is counted in ``gated``; the gate notes
   the intrusion evidence);
4. counts the result, stamps ``last_ok[pf]`` (time of the last *valid*
   message per PGN, indexed by PF, for the console) and calls
   ``handler(now, pgn, status)`` (the session's ``on_message``) for every
   known BMS message, valid or not (the session ignores invalid ones but
   counts them).  Unknown PGNs from the BMS are only counted.

Floods are harmless: each frame costs one decode and no queue grows here
(the board's receive FIFO bounds the rate).  Nothing on this path
allocates or raises.
"""
from micropython import const

from gbt import ids
from gbt import messages as m
from gbt.ids import BMS as _ID_BMS, CHARGER as _ID_CHARGER, GLOBAL as _ID_GLOBAL
from gbt.ids import PGN_TPCM as _PGN_TPCM, PGN_TPDT as _PGN_TPDT
from gbt.ids import PGN_BRM as _PGN_BRM, PGN_BCP as _PGN_BCP
from gbt.dec import decode as _decode, OK as _OK, E_LEN as _E_LEN, E_UNKNOWN as _E_UNKNOWN
from gbt.transport import TransportReceiver
from gbt.intrusion import IntrusionMonitor

_N_PF = const(0x28)           # PF 0x00..0x27 covers every GB/T 27930 PGN
_WRAP = const(0x3FFFFFFF)


def _nop(now, pgn, status):
    pass


def _yes(now, pgn):
    return True


class BmsLink:
    def __init__(self, board_send, clock, bms, cfg=None):
        self.clock = clock
        self.bms = bms
        # Intrusion evidence (late BCP, TP abuse, ...): the protocol layer
        # notes it here, the application drains it into the event log.  The
        # transport reports TP.DT trickles and preempted transfers into it.
        self.ix = IntrusionMonitor()
        self.tp = TransportReceiver(board_send, ids.CHARGER, ids.BMS, cfg=cfg, ix=self.ix)
        self.handler = _nop
        self.gate = _yes
        self.last_ok = [-1] * _N_PF
        self.rx = 0             # frames from the BMS to us
        self.ignored = 0        # other addresses / PDU2
        self.msgs = 0           # complete messages decoded OK
        self.bad_len = 0
        self.bad_range = 0
        self.unknown = 0
        self.last_bad_pgn = 0
        self.last_status = 0
        self.gated = 0          # BRM/BCP the gate refused (not decoded)

    def set_handler(self, fn):
        """Register ``fn(now, pgn, status)``; store the bound method once."""
        self.handler = fn if fn is not None else _nop

    def set_gate(self, fn):
        """Register ``fn(now, pgn) -> bool``, asked before a complete BRM or
        BCP is decoded into ``BmsData``; False = drop it undecoded."""
        self.gate = fn if fn is not None else _yes

    def reset(self):
        """Forget a half-received TP message and the time stamps (new plug)."""
        self.tp.reset()
        for i in range(_N_PF):
            self.last_ok[i] = -1

    def poll(self, now):
        """Run the transport timers; call every CAN task pass.  Nearly
        always no transfer is open and no response waits: then there is
        no timer to run, and the call into the receiver is skipped."""
        tp = self.tp
        if tp.state or tp._pending:
            tp.poll(now)

    def on_frame(self, now, frame):
        # Names imported one by one (``_decode``, ``_OK`` ...): per frame a
        # global lookup each instead of a global + a module attribute
        # lookup (``m.decode``, ``ids.BMS``).
        cid = frame.id
        if (cid & 0xFF) != _ID_BMS:
            self.ignored = (self.ignored + 1) & _WRAP
            return
        pf = (cid >> 16) & 0xFF
        da = (cid >> 8) & 0xFF
        if pf >= 240 or (da != _ID_CHARGER and da != _ID_GLOBAL):
            self.ignored = (self.ignored + 1) & _WRAP
            return
        self.rx = (self.rx + 1) & _WRAP
        n = frame.dlc
        if n > 8:
            n = 8
        elif n < 0:
            n = 0
        pgn = pf << 8
        if pgn == _PGN_TPCM or pgn == _PGN_TPDT:
            pgn = self.tp.on_frame(now, cid, frame.data, n)
            if not pgn:
                return
            if (pgn == _PGN_BCP or pgn == _PGN_BRM) and not self.gate(now, pgn):
                self.gated = (self.gated + 1) & _WRAP
                return
            tp = self.tp
            st = _decode(pgn, tp.buf, tp.length, self.bms)
        else:
            if (pgn == _PGN_BRM or pgn == _PGN_BCP) and not self.gate(now, pgn):
                self.gated = (self.gated + 1) & _WRAP
                return
            st = _decode(pgn, frame.data, n, self.bms)
        self.last_status = st
        if st == _OK:
            self.msgs = (self.msgs + 1) & _WRAP
            pf = pgn >> 8
            if pf < _N_PF:
                self.last_ok[pf] = now
        elif st == _E_UNKNOWN:
            self.unknown = (self.unknown + 1) & _WRAP
            return
        else:
            if st == _E_LEN:
                self.bad_len = (self.bad_len + 1) & _WRAP
            else:
                self.bad_range = (self.bad_range + 1) & _WRAP
            self.last_bad_pgn = pgn
        self.handler(now, pgn, st)
