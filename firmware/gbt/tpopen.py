"""Opening and closing a J1939-21 transfer on the peer's TP.CM: RTS (with
its validation and the preemption rule), BAM, and the peer's Abort.

A mixin of ``gbt.transport.TransportReceiver`` (which owns the state, the
timers and TP.DT): called once per transfer, not per packet.
"""
from time import ticks_add

from gbt.intrusion import IX_TP_PREEMPT
from gbt.ids import GLOBAL
from micropython import const
from gbt import tpdefs as T    # (one global, not one per name: RAM)

# Abort reasons this module sends (J1939-21; the table is in gbt.tpdefs).
_AB_BUSY = const(1)
_AB_RESOURCES = const(2)
_AB_TOO_BIG = const(9)
_AB_OTHER = const(250)


class TransferOpening:
    def _on_cm(self, now, da, d):
        ctrl = d[0]
        if ctrl == T.CM_RTS:
            if da != self._own:          # RTS must be destination specific
                self._error(T.E_ADDR)
                return
            self._on_rts(now, d, False)
        elif ctrl == T.CM_BAM:
            if da != GLOBAL:            # BAM is always global (J1939-21)
                self._error(T.E_ADDR)
                return
            self._on_rts(now, d, True)
        elif ctrl == T.CM_ABORT:
            if da != self._own:
                self._error(T.E_ADDR)
                return
            p = T.pgn_norm(d[5] | (d[6] << 8) | (d[7] << 16))
            if self.state == T.S_CMDT and p == self.pgn:
                self.aborts_rcvd = T.inc(self.aborts_rcvd)
                self.peer_abort = d[1]
                self._reset_session()
            else:
                self._error(T.E_UNEXPECTED)  # nothing of ours to abort
        else:
            # CTS / EOMA (we never originate) or an unknown control byte
            self._error(T.E_UNEXPECTED)

    def _on_rts(self, now, d, bam):
        size = d[1] | (d[2] << 8)
        npk = d[3]
        p3 = d[5] | (d[6] << 8) | (d[7] << 16)     # the PGN bytes as received
        pgn = p3                                    # T.pgn_norm(), inline:
        pgn = pgn & 0x3FF00 if ((pgn >> 8) & 0xFF) < 0xF0 else pgn & 0x3FFFF
        # Validate; each failure has its own J1939-21 reason.
        reason = 0
        if size > T.MAX_TP:
            reason = _AB_TOO_BIG
            err = T.E_SIZE
        elif size == 0 or npk != (size + 6) // 7:
            reason = _AB_OTHER
            err = T.E_RTS
        elif size > self._lim.size:
            reason = _AB_RESOURCES
            err = T.E_SIZE
        elif pgn not in self._pgns:
            reason = _AB_OTHER
            err = T.E_PGN
        st = self.state
        if bam:
            if reason:
                self._error(err)         # never answer a broadcast
                return
            if st == T.S_CMDT:
                self._error(T.E_BUSY)      # one buffer: RTS/CTS has priority
                return
            # a new BAM replaces an older one from the same sender
        else:
            if reason:
                self._error(err)
                if st == T.S_CMDT and pgn == self.pgn:
                    self._reset_session()    # our Abort closes that one too
                self._abort(now, reason, p3)
                return
            if st == T.S_CMDT and pgn != self.pgn:
                self._error(T.E_BUSY)
                if not self._lim.preempt:
                    # J1939-21: one connection per originator; keep the open one
                    self._abort(now, _AB_BUSY, p3)
                    return
                # The new RTS wins (EN+ restarts on any RTS): a stalled or
                # trickling transfer cannot lock out BCS.  The open one is
                # cancelled with Abort 1, as the kernel's j1939 does.
                self._note(now, IX_TP_PREEMPT, self.pgn)
                self._abort(now, _AB_BUSY, self._p3)
            # same PGN: "the most recent RTS shall be acted on and the
            # previous abandoned, no Abort" (J1939-21 5.10.3.1); a BAM is
            # dropped the same way.
        self._reset_session()
        self.pgn = pgn
        self._p3 = p3
        self._size = size
        self._total = npk
        self._next = 1
        self._left = self._lim.retries
        self._end = ticks_add(now, self._lim.bound_ms(npk))
        if bam:
            self.state = T.S_BAM
            self._win_end = npk
            self._deadline = ticks_add(now, self._t1)
        else:
            self.state = T.S_CMDT
            m = d[4]
            self._rts_max = 255 if m == 0 else m   # 0 is invalid: no limit
            self._send_cts(now)
