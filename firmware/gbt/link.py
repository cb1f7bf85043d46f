"""J1939 link to the BMS: address filter, transport, decode, dispatch.

``BmsLink.drain(now, recv, frame, burst, budget)`` is the CAN task's
receive loop: it takes frames from the board (``recv(frame)``, a
``board.CanFrame`` filled in place) until the board has none, ``burst``
frames were taken or their cost reached ``budget`` (below).
``on_frame(now, frame)`` handles one frame already in ``frame`` the same
way.  Per frame it

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
   message per PGN, indexed by PF) and calls ``handler(now, pgn, status)``
   (the session's ``on_message``) for every known BMS message, valid or
   not (the session ignores invalid ones but counts them).  Unknown PGNs
   from the BMS are only counted.

Why the loop is shaped like this (docs/performance.md, "Target
optimisations: CAN path and session").  A saturated bus brings ~19 frames
per 10 ms pass, nearly all of them repeats (BCL every 50 ms, BSM ...).
In bytecode, the board call, the filter, the decoder and the session's
handler cost ~31 kinstr (1,000 target instructions) per frame.  So
``drain`` is a viper loop and the frequent cases never leave it:

* **repeat** (``_TAB``): a single-frame message whose length and bytes
  equal the last one *accepted* for its PF is not decoded again (the
  decoders are idempotent: ``BmsData`` already holds exactly what they
  would write).  It is counted (``rx``, ``msgs``), time-stamped
  (``last_ok``) and handed to the handler like any valid message, so the
  session's timeout bookkeeping sees it.  Only BRM and BCP (gated) are
  never remembered; a PF decoded from a TP message forgets its entry.
* **fold**: a repeat in the *same* pass as the accepted message (``_SEEN``
  = this pass) is only counted.  The handler has just run with the same
  ``now`` on the same ``BmsData``, and for every message it is idempotent
  at equal ``now`` (it sets time stamps and flags; a stop, a re-handshake
  or a stage step it starts leaves a stage in which the same message does
  nothing; no message brings the session *into* CHARGING): calling it
  again would change nothing.  (``on_frame`` is a pass of its own.)
* **TP.DT**: the next packet of an open transfer window, and the message's
  last packet, are copied into the transport buffer here
  (``TransportReceiver.fast``).

Everything else goes through ``_slow`` (bytecode).  ``budget`` bounds a
pass: every frame adds its cost (``_W_*``, ~1,000 target instructions
each: a repeat, an ignored frame or a plain TP.DT 1 (with the board's
``recv`` they cost 1.5..2.5 kinstr), a repeat handled 3, a decode 6, plus
3 per 64 bytes of a completed TP message) and the loop stops once the sum
reaches ``budget``; the frames left wait in the board's FIFO for the next
pass (``rx_cut`` counts such passes).  Normal traffic stays below the
default (a 96-cell BMV's 28 packets with a BCL and a BSM: ~40 units), so
nothing on the bus moves; a flood of frames that are not repeats is
bounded by it.

Nothing on this path allocates or raises.  ``frame.data`` holds 8 bytes
(``board.CanFrame``).
"""
import micropython
from array import array
from micropython import const

from gbt import ids
from gbt.ids import PGN_BRM as _PGN_BRM, PGN_BCP as _PGN_BCP
from gbt.dec import decode as _decode, OK as _OK, E_LEN as _E_LEN, E_UNKNOWN as _E_UNKNOWN
from gbt.transport import TransportReceiver
from gbt.intrusion import IntrusionMonitor

_N_PF = const(0x28)           # PF 0x00..0x27 covers every GB/T 27930 PGN
_WRAP = const(0x3FFFFFFF)
_ID_BMS = const(0xF4)
_ID_CHARGER = const(0x56)
_ID_GLOBAL = const(0xFF)
_PF_TPCM = const(0xEC)
_PF_TPDT = const(0xEB)
_PF_BRM = const(0x02)
_PF_BCP = const(0x06)
_S_OK = const(0)              # gbt.dec.OK (a const does not cross modules)

# ``_st`` (int32 words): what the viper loop reads and writes.
_IGN = const(0)               # ignored
_RX = const(1)                # rx
_MSGS = const(2)              # msgs
_STAT = const(3)              # last_status
_PASS = const(4)              # drain calls (wraps): "this pass"
_CUT = const(5)               # drain calls ended by ``budget``
_SEEN = const(6)              # per PF: _PASS when its remembered message was last handled
_TAB = const(6 + 0x28)        # per PF 3 words: n + 1 (0 = none), then 8 payload bytes
_ST_WORDS = const(6 + 0x28 + 3 * 0x28)

# gbt.transport ``fast`` indices (F_*)
_F_STOP = const(0)
_F_NEXT = const(1)
_F_DEADLINE = const(2)
_F_END = const(3)
_F_DA = const(4)
_F_T1 = const(5)
_F_TAKEN = const(6)
_F_LAST = const(7)
_F_KLAST = const(8)

# Cost of a frame against ``budget`` (~1,000 target instructions each).
_W_FAST = const(1)            # ignored, folded, TP.DT of the window
_W_DUP = const(3)             # repeat: time stamp + handler
_W_SLOW = const(6)            # decode + handler, TP.CM, other TP.DT
_W_BIG = const(3)             # + this per 64 bytes of a completed TP message

_HALF = const(0x20000000)     # time.ticks_diff in viper: period 2**30

# ``ixc`` (int32 words): counts for the intrusion monitor (gbt.ixwatch),
# written by the viper loop: valid messages per PF, then frames from a
# foreign source address (+ the last one's id), then frames from the BMS
# not for us (PDU2, another destination; + the last id).
IXC_FOREIGN = const(0x28)
IXC_NOTUS = const(0x2A)
_IXC_WORDS = const(0x2C)
_MASK = const(0x3FFFFFFF)


def _nop(now, pgn, status):
    pass


def _yes(now, pgn):
    return True


@micropython.viper
def _remember(st, pf: int, data, n: int):
    """Keep the payload of an accepted single-frame message of ``pf``."""
    s = ptr32(st)
    b = ptr8(st)
    d = ptr8(data)
    if n > 8:                         # (the DLC as received: clamped as drain does)
        n = 8
    o = _TAB + 3 * pf
    bo = (o + 1) * 4
    i = 0
    while i < n:
        b[bo + i] = d[i]
        i += 1
    s[o] = n + 1


@micropython.viper
def _forget(st, lo):
    """last_ok[:] = -1 and no payload remembered (machine code: a reset is
    part of the plug-in tick, 0x28 rounds of bytecode would be ~25 kinstr)."""
    s = ptr32(st)
    i = 0
    while i < _N_PF:
        lo[i] = -1
        s[_TAB + 3 * i] = 0
        i += 1


class BmsLink:
    def __init__(self, board_send, clock, bms, cfg=None):
        self.clock = clock
        self.bms = bms
        # Intrusion evidence (late BCP, TP abuse, ...): the protocol layer
        # notes it here, the application drains it into the event log.  The
        # transport reports TP.DT trickles and preempted transfers into it.
        self.ix = IntrusionMonitor()
        self.tp = TransportReceiver(board_send, ids.CHARGER, ids.BMS, cfg=cfg, ix=self.ix)
        self._tpf = self.tp.fast
        self._tpbuf = self.tp.buf
        self.handler = _nop
        self.gate = _yes
        self._st = array("i", [0] * _ST_WORDS)
        self.ixc = array("i", [0] * _IXC_WORDS)   # intrusion counts (IXC_*)
        self.unknown_pgn = 0    # the last PGN decoded as unknown
        # time of the last valid message per PF (-1: none), read by the
        # supervisor (H-11), the checks' staleness and the console.  A
        # list of ticks (full width on every port), written in bytecode.
        self.last_ok = [-1] * _N_PF
        self.bad_len = 0
        self.bad_range = 0
        self.unknown = 0
        self.last_bad_pgn = 0
        self.gated = 0          # BRM/BCP the gate refused (not decoded)

    # counters kept in ``_st`` (written by the viper loop)
    @property
    def rx(self):
        """Frames from the BMS to us."""
        return self._st[_RX]

    @property
    def ignored(self):
        """Frames of other addresses / PDU2."""
        return self._st[_IGN]

    @property
    def msgs(self):
        """Complete messages decoded OK (repeats included)."""
        return self._st[_MSGS]

    @property
    def last_status(self):
        return self._st[_STAT]

    @property
    def rx_cut(self):
        """CAN passes that stopped at their cost bound (frames left waiting
        in the board's FIFO for the next pass)."""
        return self._st[_CUT]

    def set_handler(self, fn):
        """Register ``fn(now, pgn, status)``; store the bound method once."""
        self.handler = fn if fn is not None else _nop

    def set_gate(self, fn):
        """Register ``fn(now, pgn) -> bool``, asked before a complete BRM or
        BCP is decoded into ``BmsData``; False = drop it undecoded."""
        self.gate = fn if fn is not None else _yes

    def reset(self):
        """Forget a half-received TP message, the time stamps and the
        remembered payloads (new plug: ``BmsData`` was reset too)."""
        self.tp.reset()
        _forget(self._st, self.last_ok)

    def poll(self, now):
        """Run the transport timers; call every CAN task pass.  Nearly
        always no transfer is open and no response waits: then there is
        no timer to run, and the call into the receiver is skipped."""
        tp = self.tp
        if tp.state or tp.pending:
            tp.poll(now)

    def on_frame(self, now, frame):
        """Handle the one frame in ``frame``."""
        self.drain(now, None, frame, 1, 0x3FFFFFFF)

    @micropython.viper
    def drain(self, now: int, recv, frame, burst: int, budget: int) -> int:
        """Receive and handle frames (see the module doc); returns how many
        were taken.  ``recv`` None: handle the frame already in ``frame``."""
        if recv:                      # (viper: no "is not None")
            if not recv(frame):
                return 0              # (most passes: nothing set up for nothing)
        s = ptr32(self._st)
        sb = ptr8(self._st)
        f = ptr32(self._tpf)
        tb = ptr8(self._tpbuf)
        xc = ptr32(self.ixc)
        p = (s[_PASS] + 1) & _WRAP
        s[_PASS] = p
        n = 0
        cost = 0
        while n < burst and cost < budget:
            if n and not recv(frame):   # (the first frame is in already)
                break
            n += 1
            cid = int(frame.id)
            pf = (cid >> 16) & 0xFF
            da = (cid >> 8) & 0xFF
            if (cid & 0xFF) != _ID_BMS or pf >= 240 or (da != _ID_CHARGER and da != _ID_GLOBAL):
                s[_IGN] = (s[_IGN] + 1) & _WRAP
                x = IXC_FOREIGN if (cid & 0xFF) != _ID_BMS else IXC_NOTUS
                xc[x] = (xc[x] + 1) & _WRAP
                xc[x + 1] = cid
                cost += _W_FAST
                continue
            s[_RX] = (s[_RX] + 1) & _WRAP
            k = int(frame.dlc)
            if k > 8:
                k = 8
            elif k < 0:
                k = 0
            d = ptr8(frame.data)
            if pf < _N_PF:
                o = _TAB + 3 * pf
                if s[o] == k + 1:
                    bo = (o + 1) * 4
                    i = 0
                    while i < k and sb[bo + i] == d[i]:
                        i += 1
                    if i == k:                        # a repeat
                        s[_MSGS] = (s[_MSGS] + 1) & _WRAP
                        xc[pf] = (xc[pf] + 1) & _WRAP
                        s[_STAT] = _S_OK
                        if s[_SEEN + pf] == p:        # folded: handled in this pass
                            cost += _W_FAST
                            continue
                        s[_SEEN + pf] = p
                        self._repeat(now, pf)
                        cost += _W_DUP
                        continue
            elif pf == _PF_TPDT and k > 1 and d[0] == f[_F_NEXT] and da == f[_F_DA] \
                    and ((now - f[_F_DEADLINE] + _HALF) & _MASK) <= _HALF \
                    and ((now - f[_F_END] + _HALF) & _MASK) <= _HALF:
                # the next packet of the open window (TransportReceiver.fast);
                # T1 restarts from ``now`` when the receiver takes the window
                # back (it reads F_TAKEN)
                seq = d[0]
                m = 0
                if seq < f[_F_STOP]:
                    if k == 8:
                        m = 7                       # a plain packet
                elif seq == f[_F_LAST] and k - 1 >= f[_F_KLAST]:
                    m = f[_F_KLAST]                 # the message's last packet
                if m:
                    o = (seq - 1) * 7
                    i = 0
                    while i < m:
                        tb[o + i] = d[1 + i]
                        i += 1
                    f[_F_NEXT] = seq + 1
                    f[_F_TAKEN] = 1
                    if m == 7 and seq < f[_F_STOP]:
                        cost += _W_FAST
                    else:
                        cost += int(self._tp_done(now))
                    continue
            cost += int(self._slow(now, frame, pf, k))
        if cost >= budget:
            s[_CUT] = (s[_CUT] + 1) & _WRAP
        if f[_F_TAKEN]:
            self.tp.sync(now)         # T1 from this pass (full-width ticks)
        return n

    def _repeat(self, now, pf):
        """A repeat of the remembered message of ``pf`` in a new pass."""
        self.last_ok[pf] = now
        self.handler(now, pf << 8, _OK)

    # The bytecode paths below keep each frame within the 11 words a call
    # gets on the C stack (a bigger one is allocated on the GC heap at every
    # call, docs/performance.md): hence the small steps.
    def _tp_done(self, now):
        """The fast path took the last packet of a TP message."""
        return self._message(now, self.tp.complete(now))

    def _message(self, now, pgn):
        """A TP message is complete in ``tp.buf``: gate, decode, dispatch."""
        pf = pgn >> 8
        if pf < _N_PF:
            self._st[_TAB + 3 * pf] = 0   # BmsData now holds the TP message
        if (pf == _PF_BCP or pf == _PF_BRM) and not self.gate(now, pgn):
            self.gated = (self.gated + 1) & _WRAP
            return _W_SLOW
        tp = self.tp
        pgn = _decode(pgn, tp.buf, tp.length, self.bms)             # the status
        self._result(now, pf, pgn)
        return _W_SLOW + (tp.length >> 6) * _W_BIG

    def _slow(self, now, frame, pf, n):
        """Everything but the fast cases of ``drain``; returns its cost."""
        if pf == _PF_TPCM or pf == _PF_TPDT:
            pf = self.tp.on_frame(now, frame.id, frame.data, n)    # a PGN or 0
            return self._message(now, pf) if pf else _W_SLOW
        if (pf == _PF_BRM or pf == _PF_BCP) and not self.gate(now, pf << 8):
            self.gated = (self.gated + 1) & _WRAP
            return _W_SLOW
        n = _decode(pf << 8, frame.data, n, self.bms)              # the status
        if n == _OK and pf != _PF_BRM and pf != _PF_BCP and pf < _N_PF:
            _remember(self._st, pf, frame.data, frame.dlc)
        self._result(now, pf, n)
        return _W_SLOW

    def _result(self, now, pf, st):
        """Count a decoded message, stamp it, hand it to the handler."""
        s = self._st
        s[_STAT] = st
        if st == _OK:
            s[_MSGS] = (s[_MSGS] + 1) & _WRAP
            if pf < _N_PF:
                self.last_ok[pf] = now
                s[_SEEN + pf] = s[_PASS]
                self.ixc[pf] = (self.ixc[pf] + 1) & _WRAP
        elif st == _E_UNKNOWN:
            self.unknown = (self.unknown + 1) & _WRAP
            self.unknown_pgn = pf << 8
            return
        else:
            if st == _E_LEN:
                self.bad_len = (self.bad_len + 1) & _WRAP
            else:
                self.bad_range = (self.bad_range + 1) & _WRAP
            self.last_bad_pgn = pf << 8
        self.handler(now, pf << 8, st)
