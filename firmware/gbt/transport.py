"""SAE J1939-21 transport protocol, receiving side (charger <- BMS).

GB/T 27930 carries every BMS message longer than 8 bytes (BRM, BCP, BCS and
the optional BMV/BMT/BSP) with the J1939-21 transport protocol (TP).  The
charger is only ever the *responder*: it receives TP.CM_RTS / TP.DT (or a
TP.CM_BAM) from the BMS and answers with TP.CM_CTS, TP.CM_EndOfMsgAck or
TP.CM_Abort.  No charger message is longer than 8 bytes, so there is no
sender here (the originator timers T3/T4 are declared for completeness).

One ``TransportReceiver`` per peer: J1939-21 allows one connection-mode
session per originator/responder pair, plus one BAM.  We keep one buffer,
so a BAM is only accepted while no RTS/CTS session is open (see
docs/transport.md for the whole state machine and the table of malformed
sequences with their reactions and tests).

Hot path rules: ``on_frame`` and ``poll`` allocate nothing (preallocated
buffers, integer arithmetic only, counters wrap before they leave the
small-int range) and never raise.  Timers use ``time.ticks_diff`` so they
work with the board clock (wrapping) and with the SIL ``SimClock``.

Fast window (``fast``, ``F_*`` below): the link (``gbt.link.BmsLink.drain``,
viper) copies the plain next packets of a window itself; every entry point
here first takes the window back (``_pull``) and republishes it on return
(``_arm``), so the code only sees ``_next``/``_deadline`` as attributes.
The whole protocol is in docs/transport.md ("Fast window").

The J1939-21 vocabulary (control bytes, Abort reasons, states, error
codes) and the ``tp.*`` settings are in ``gbt.tpdefs``; opening a transfer
(TP.CM: RTS, BAM, a peer's Abort) in ``gbt.tpopen``.
"""
import micropython
from array import array
from micropython import const
from time import ticks_add, ticks_diff

from gbt.tpdefs import CONFIG_SCHEMA, TpLimits  # noqa: F401 (registered there)
from gbt.tpdefs import (CM_RTS, CM_CTS, CM_EOMA, CM_ABORT,  # noqa: F401
                        S_IDLE, S_CMDT,
                        S_BAM, STATE_NAMES, E_NONE, E_DLC, E_ADDR, E_NO_SESSION,
                        E_SEQ, E_DUP, E_RTS, E_SIZE, E_PGN, E_BUSY, E_TIMEOUT, E_TX,
                        E_UNEXPECTED, E_SLOW, ERROR_NAMES, MAX_TP, inc as _inc)
from gbt.tpopen import TransferOpening

# Abort reasons this module sends (J1939-21; the table is in gbt.tpdefs).
_AB_TIMEOUT = const(3)
_AB_RETRANSMIT = const(5)
_AB_BAD_SEQ = const(7)
from gbt.intrusion import IX_TP_TRICKLE
from gbt import ids             # (construction only: one global, not nine)
from gbt.ids import PGN_TPCM, PGN_TPDT, GLOBAL



# ``fast``: the window the link may take TP.DT packets from itself
# (gbt/link.py keeps its own copy of these indices: consts do not cross
# modules).
_F_STOP = const(0)         # packets _F_NEXT .. _F_STOP - 1; 0 = no window
_F_NEXT = const(1)         # next expected sequence number
_F_DEADLINE = const(2)     # T1 / T2 deadline (ticks)
F_END = const(3)          # whole-transfer bound (ticks)
_F_DA = const(4)           # destination address of the transfer's packets
_F_T1 = const(5)           # tp.t1_ms
F_TAKEN = const(6)        # the link took packets since the last _pull
_F_LAST = const(7)         # the message's last packet if in the window (else 0):
_F_KLAST = const(8)        # the link takes it too (its _F_KLAST bytes) and calls complete()
_F_WORDS = const(9)
_MASK30 = const(0x3FFFFFFF)


@micropython.viper
def _copy(dst, doff: int, src, soff: int, n: int):
    """dst[doff:doff + n] = src[soff:soff + n] without a slice object."""
    d = ptr8(dst)
    s = ptr8(src)
    i = 0
    while i < n:
        d[doff + i] = s[soff + i]
        i += 1


class TransportReceiver(TransferOpening):
    """Receive J1939-21 TP messages from one peer.

    send(can_id, buf, n) -> bool : the board's CAN send (CTS/EOMA/Abort)
    own, peer : our / the originator's source address
    pgns      : PGNs accepted by RTS/BAM; anything else gets Abort(250)
    size      : receive buffer size in bytes (largest message)
    cfg       : config dict (keys of CONFIG_SCHEMA; missing keys = default)
    ix        : ``gbt.intrusion.IntrusionMonitor`` told about a trickle
                (IX_TP_TRICKLE) or a preempted transfer (IX_TP_PREEMPT),
                with the PGN of the transfer closed; None = not reported
    """

    def __init__(self, send, own=ids.CHARGER, peer=ids.BMS,
                 pgns=(ids.PGN_BRM, ids.PGN_BCP, ids.PGN_BCS, ids.PGN_BMV, ids.PGN_BMT,
                       ids.PGN_BSP),
                 size=MAX_TP, cfg=None, ix=None):
        self._send = send
        self._own = own & 0xFF
        self._peer = peer & 0xFF
        self._pgns = tuple(pgns)
        self.buf = bytearray(size)
        lim = self._lim = TpLimits(cfg, size)
        self._t1 = lim.t1               # per packet: one lookup, not two
        self._ix = ix
        # Our TP.CM frames go to the peer, priority 7 (J1939 / GB/T 27930
        # convention: 0x1CECF456 for charger -> BMS).
        self._id_cm = ids.can_id(7, PGN_TPCM, self._peer, self._own)
        self._tx = bytearray(8)
        # Counters (wrap at 2**30) and diagnostics.
        self.completed = 0      # messages delivered
        self.aborts_sent = 0
        self.aborts_rcvd = 0    # Aborts from the peer that closed a transfer
        self.errors = 0         # malformed / unexpected input, timeouts
        self.last_error = E_NONE
        self.last_abort = 0     # reason of the last Abort we sent
        self.peer_abort = 0     # reason of the last Abort received
        self.dups = 0           # duplicate TP.DT ignored
        self.retransmits = 0    # CTS sent to re-request missing packets
        self.tx_fail = 0        # send() refused (retried until Tr)
        self.state = S_IDLE
        self.pgn = 0            # PGN of the open / last completed transfer
        self.length = 0         # bytes valid in buf after completion
        self.pending = False    # a refused response waits for a retry (poll)
        self._pend_until = 0
        self.fast = array("i", [0] * _F_WORDS)
        self.fast[_F_T1] = lim.t1
        self._reset_session()

    # ------------------------------------------------------------ helpers
    def _reset_session(self):
        self.state = S_IDLE
        self._size = 0
        self._total = 0         # packets in the message
        self._next = 1          # next expected sequence number
        self._win_end = 0       # last packet of the current CTS window
        self._rts_max = 255     # RTS byte 5: max packets per CTS
        self._left = 0          # retransmission requests left
        self._resync = False    # waiting for the re-requested packet
        self._deadline = 0
        self._end = 0           # whole-transfer bound (size x tp.total_pkt_ms)
        self._p3 = 0            # PGN bytes as received (echoed back), LE in one int

    def reset(self):
        """Drop any open transfer silently (e.g. new charging session)."""
        self._reset_session()
        self.pending = False
        self.fast[F_TAKEN] = 0          # packets the link took are dropped too
        self._arm()

    def _pull(self, now):
        """Take back what the link's fast path advanced (see ``fast``)."""
        f = self.fast
        if f[F_TAKEN]:
            f[F_TAKEN] = 0
            self._next = f[_F_NEXT]
            self._deadline = ticks_add(now, self._t1)

    def sync(self, now):
        """The link's pass that took packets ends at ``now``."""
        self._pull(now)
        self._arm()

    def _arm(self):
        """Publish the window of plain next-packets the link may take."""
        f = self.fast
        st = self.state
        if st == S_IDLE or self._resync:
            f[_F_STOP] = 0               # no window: no packet is taken
            f[_F_LAST] = 0
            return
        # the packet that ends the CTS window (sends the next CTS) or the
        # message (EndOfMsgAck, decode) is never taken by the fast path
        total = self._total
        stop = self._win_end if self._win_end < total else total
        f[_F_NEXT] = self._next
        if stop == total:               # the message's last packet is in this window
            f[_F_LAST] = total
            f[_F_KLAST] = self._size - (total - 1) * 7
        else:
            f[_F_LAST] = 0
        f[_F_DEADLINE] = self._deadline & _MASK30
        f[F_END] = self._end & _MASK30
        f[_F_DA] = self._own if st == S_CMDT else GLOBAL
        f[_F_STOP] = stop

    def _error(self, code):
        self.errors = _inc(self.errors)
        self.last_error = code

    @micropython.viper
    def _cm(self, now: int, ctrl: int, b1: int, b2: int, b34: int, p: int) -> bool:
        """Send a TP.CM frame: control bytes ``ctrl``, ``b1``, ``b2``, ``b34``
        (bytes 4 and 5, LE), the 3 PGN bytes ``p``; a refusal is kept and
        retried by poll() until Tr.  (Machine code, and few arguments: a
        bytecode frame over 11 words is taken from the GC heap at every
        call, docs/performance.md.)"""
        t = self._tx
        d = ptr8(t)
        d[0] = ctrl
        d[1] = b1
        d[2] = b2
        d[3] = b34
        d[4] = b34 >> 8
        d[5] = p
        d[6] = p >> 8
        d[7] = p >> 16
        if self._send(self._id_cm, t, 8):
            self.pending = False
            return True
        self.tx_fail = _inc(self.tx_fail)
        self.pending = True
        self._pend_until = ticks_add(now, self._lim.tr)
        return False

    def _abort(self, now, reason, p):
        self.aborts_sent = _inc(self.aborts_sent)
        self.last_abort = reason
        self._cm(now, CM_ABORT, reason, 0xFF, 0xFFFF, p)

    def _abort_session(self, now, reason, err):
        """Abort the open RTS/CTS transfer (BAM is dropped without Abort:
        J1939-21 never answers a broadcast)."""
        self._error(err)
        if self.state == S_CMDT:
            self._abort(now, reason, self._p3)
        self._reset_session()

    def _send_cts(self, now):
        """Grant the next window starting at self._next; T2 runs."""
        n = self._total - self._next + 1
        w = self._lim.window
        if n > w:
            n = w
        if n > self._rts_max:
            n = self._rts_max
        self._win_end = self._next + n - 1
        self._deadline = ticks_add(now, self._lim.t2)
        self._cm(now, CM_CTS, n, self._next, 0xFFFF, self._p3)

    # ------------------------------------------------------------ public
    def on_frame(self, now_ms, can_id, data, n):
        """Feed one frame; returns the PGN of a message just completed
        (``buf[:length]`` valid until the next call) or 0."""
        # (one level of calls less than a _pull/_on_frame split: a BCS
        # comes as 3 TP frames every 250 ms, a 96-cell BMV as 29)
        f = self.fast
        if f[F_TAKEN]:                  # _pull(now_ms)
            f[F_TAKEN] = 0
            self._next = f[_F_NEXT]
            self._deadline = ticks_add(now_ms, self._t1)
        if self.state != S_IDLE:
            self._expire(now_ms)        # a late frame must not revive a dead session
        if n > len(data):
            n = len(data)
        pf = (can_id >> 16) & 0x3FF    # DP + PF: TP PGNs have DP = 0
        r = 0
        if (can_id & 0xFF) != self._peer:
            self._error(E_ADDR if pf == (PGN_TPDT >> 8) or pf == (PGN_TPCM >> 8)
                        else E_UNEXPECTED)
        elif pf == (PGN_TPDT >> 8):
            r = self._on_dt(now_ms, (can_id >> 8) & 0xFF, data, n)
        elif pf == (PGN_TPCM >> 8):
            if n < 8:
                self._error(E_DLC)      # control fields unreadable: ignore
            elif data[0] == CM_RTS and ((can_id >> 8) & 0xFF) == self._own:
                self._on_rts(now_ms, data, False)     # (the frequent one)
            else:
                self._on_cm(now_ms, (can_id >> 8) & 0xFF, data)
        else:
            self._error(E_UNEXPECTED)   # not a TP frame: caller's mistake
        self._arm()
        return r

    def poll(self, now_ms):
        """Run the timers: T1/T2 expiry aborts the transfer (Abort reason 3;
        a BAM is dropped), a refused response is retried until Tr.

        A response still refused after Tr is given up (E_TX); an open
        transfer then ends by its own T1/T2 (the peer never got its CTS)."""
        self._pull(now_ms)
        if self.pending:
            if self._send(self._id_cm, self._tx, 8):
                self.pending = False
            elif ticks_diff(now_ms, self._pend_until) > 0:
                self.pending = False
                self._error(E_TX)
        self._expire(now_ms)
        self._arm()

    def _expire(self, now):
        if self.state != S_IDLE:
            if ticks_diff(now, self._deadline) > 0:
                self._abort_session(now, _AB_TIMEOUT, E_TIMEOUT)
            elif ticks_diff(now, self._end) > 0:
                # Every packet came within T1 but the whole transfer is far
                # slower than its size allows: a TP.DT trickle holding the
                # only channel.  J1939-21 has no reason code for it: timeout.
                self._note(now, IX_TP_TRICKLE, self.pgn)
                self._abort_session(now, _AB_TIMEOUT, E_SLOW)

    def _note(self, now, kind, pgn):
        ix = self._ix
        if ix is not None:
            ix.note(now, kind, pgn)

    # ------------------------------------------------------------ TP.DT
    def _on_dt(self, now, da, d, n):
        st = self.state
        if st == S_IDLE:
            self._error(E_NO_SESSION)
            return 0
        if (st == S_CMDT and da != self._own) or (st == S_BAM and da != GLOBAL):
            self._error(E_ADDR)          # not this transfer's packets
            return 0
        if n < 1:
            self._error(E_DLC)
            return 0
        seq = d[0]
        if seq == 0 or seq > self._total:
            # no such packet: the sender is confused beyond recovery
            self._abort_session(now, _AB_BAD_SEQ, E_SEQ)
            return 0
        if seq < self._next:
            self.dups = _inc(self.dups)  # already have it: ignore, T1 not
            self._error(E_DUP)           # restarted, so a flood ends at T1
            return 0
        if seq > self._next:
            return self._gap(now)
        off = (seq - 1) * 7
        k = self._size - off
        if k > 7:
            k = 7
        if n - 1 < k:
            # short DT missing payload: treat it as lost (a gap follows)
            self._error(E_DLC)
            return 0
        _copy(self.buf, off, d, 1, k)
        # padding bytes (J1939-21: 0xFF) are neither copied nor checked
        self._resync = False
        self._next = seq + 1
        if seq == self._total:
            return self._done(now)
        if st == S_CMDT and seq >= self._win_end:
            self._send_cts(now)          # next window, T2 runs
        else:
            self._deadline = ticks_add(now, self._t1)
        return 0

    def _done(self, now):
        """The last packet is in: EndOfMsgAck (RTS/CTS), message complete."""
        self.length = self._size
        self.completed = _inc(self.completed)
        if self.state == S_CMDT:
            self._cm(now, CM_EOMA, self._size & 0xFF, self._size >> 8,
                     self._total | 0xFF00, self._p3)
        # Closed: IDLE (``pgn`` stays the completed message's).  The other
        # fields of the transfer are dead while IDLE (every reader checks
        # ``state`` first; the next RTS/BAM resets them all), so the 13
        # stores of _reset_session are not spent here, 4 times a second.
        self.state = S_IDLE
        self._resync = False
        return self.pgn

    def complete(self, now):
        """The link's fast path took the last packet of the message
        (``_F_LAST``, copied into ``buf``): finish as ``on_frame`` would;
        returns the PGN."""
        self._pull(now)
        pgn = self._done(now)
        self._arm()
        return pgn

    def _gap(self, now):
        """Packets missing before this one."""
        if self._resync:
            # rest of the old window still in flight after our re-request:
            # ignore until the re-requested packet comes (T2 still runs)
            self._error(E_SEQ)
            return 0
        if self.state == S_BAM:
            self._abort_session(now, _AB_BAD_SEQ, E_SEQ)   # silent drop
            return 0
        if self._left > 0:
            self._left -= 1
            self._resync = True
            self.retransmits = _inc(self.retransmits)
            self._error(E_SEQ)
            self._send_cts(now)          # re-request from the first missing
            return 0
        self._abort_session(now, _AB_RETRANSMIT if self._lim.retries else _AB_BAD_SEQ,
                            E_SEQ)
        return 0
