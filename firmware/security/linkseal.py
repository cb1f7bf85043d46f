"""The stepped seal of the link's records (issue 13, C-2): ``Sealer``.

One record at a time, in steps of bounded work, so that sealing telemetry
never holds a control pass (the sealing task runs one step a run,
security/linkservice.py).  ``linkrec.RecordLayer.seal`` runs it to
completion: one implementation for the stepped and the one-shot seal, so
the frames are the same bytes (layout: security/linkrec.py)."""
import struct
from micropython import const
from security.linkrec import HEADER, TAG, MAX_PAYLOAD, SUITE_SM, SUITE_AES, _copy, _pack_seq

# Work of a seal step, in kinstr of the QEMU target (``ticks_us`` under
# ``-icount shift=0``; host_tools/secbench.py --seal, "seal unit" rows):
# a step's own cost (the call, the blocks loop), then per unit one CTR
# block (cipher block + XOR), one compression of the HMAC's hash, one
# padding or outer-hash unit (a compression + building its block).  A step
# does units while their sum stays within the step budget (``Sealer.budget``,
# ``sec.seal_kinstr``), at least one.
STEP_COST = const(8)
_UNIT = {SUITE_SM: (10, 42, 48), SUITE_AES: (10, 33, 39)}

_P_IDLE = const(0)
_P_CTR = const(1)
_P_MAC = const(2)       # full blocks of header + ciphertext, then the first padded block
_P_TAIL2 = const(3)     # the length-only block (when the tail was 56..63 bytes)
_P_OUTER = const(4)     # the outer hash, tag into the frame


class Sealer:
    """Seals one record at a time into a caller's buffer, in steps of
    bounded work (``budget`` kinstr of the target, see ``_UNIT``): the CTR
    blocks, then the HMAC's compressions over header + ciphertext in place,
    then the outer hash.  ``begin`` takes the sequence number, writes the
    header and copies the payload (it need not stay unchanged after
    ``begin``); ``step`` returns True once the frame is complete.  Nothing
    is allocated by ``begin`` or ``step``.  ``RecordLayer.seal`` is this
    run to completion: one implementation for the stepped and the one-shot
    seal, so the frames are the same bytes."""

    def __init__(self, layer):
        self._l = layer
        d = layer.tx
        self._ctr = d.ctr
        self._mac = d.mac
        # the MAC's compression and its state, for the common step (one
        # full block) without the calls and lookups of the general one
        self._comp = d.mac._comp
        self._v = d.mac.v
        self._w = d.mac._w
        self._full = 0
        u = _UNIT[layer.suite]
        self._cb = u[0]
        self._hc = u[1]
        self._hp = u[2]
        self.budget = 50            # kinstr of the target a step (sec.seal_kinstr)
        self.busy = False
        self.out = None
        self.off = 0
        self.n = 0
        self.largest = 0            # the largest step so far, in units' cost (kinstr)
        self._ph = _P_IDLE
        self._i = 0
        self._nb = 0
        self._m = 0

    def begin(self, rtype, src, so, n, out, off):
        """Start sealing src[so:so+n] as record ``rtype`` into
        out[off:off+HEADER+n+TAG]."""
        if self.busy:
            raise RuntimeError("sealer busy")
        if n > MAX_PAYLOAD:
            raise ValueError("record payload too long")
        lay = self._l
        d = lay.tx
        d.seq += 1
        out[off] = lay.suite
        out[off + 1] = rtype
        _pack_seq(out, off + 2, d.seq)
        struct.pack_into(">H", out, off + 10, n)
        _copy(out, off + HEADER, src, so, n)
        self._ctr.start(d.seq)
        self.out = out
        self.off = off
        self.n = n
        self._nb = (n + 15) >> 4
        self._m = HEADER + n
        self._full = (HEADER + n) >> 6
        self._i = 0
        if self._nb:
            self._ph = _P_CTR
        else:
            self._ph = _P_MAC
            self._mac.start()
        self.busy = True

    def step(self, budget=0):
        """One step (of ``budget`` kinstr, default ``self.budget``); True
        once the frame is complete (then not busy)."""
        budget = budget or self.budget
        ph = self._ph
        if ph != _P_CTR and 2 * self._hc + STEP_COST > budget:
            # the common steps: one hash unit (a full block, the padding,
            # the length block or the outer hash: the units of the loop
            # below), called without the loop's calls and lookups.  The
            # same units as ``_hash_unit``, written out on purpose: calling
            # it from here made the longest run 74 kinstr on the target
            # (63 as it is), over the 69 of a 1 ms pass
            i = self._i
            if ph == _P_MAC and i < self._full:
                self._comp(self._v, self.out, self.off + (i << 6), self._w)
                self._i = i + 1
                c = STEP_COST + self._hc
            elif ph == _P_OUTER:
                self._mac.finish(self.out, self.off + self._m, TAG >> 2)
                self._ph = _P_IDLE
                self.busy = False
                c = STEP_COST + self._hp
                if c > self.largest:
                    self.largest = c
                return True
            else:
                f = self._full << 6
                k = self._m - f
                if ph == _P_MAC:
                    self._mac.tail(0, self.out, self.off + f, k, self._m)
                    self._ph = _P_TAIL2 if k >= 56 else _P_OUTER
                else:
                    self._mac.tail(1, self.out, self.off + f, k, self._m)
                    self._ph = _P_OUTER
                c = STEP_COST + self._hp
            if c > self.largest:
                self.largest = c
            return False
        left = budget - STEP_COST
        spent = STEP_COST
        first = True
        while True:
            if self._ph == _P_CTR:
                k = left // self._cb
                if k <= 0:
                    if not first:
                        break
                    k = 1
                i = self._i
                if k > self._nb - i:
                    k = self._nb - i
                self._ctr.blocks(self.out, self.off + HEADER, self.n, i, k)
                i += k
                if i == self._nb:
                    i = 0
                    self._ph = _P_MAC
                    self._mac.start()
                self._i = i
                c = k * self._cb
            else:
                c = self._hc if (self._ph == _P_MAC and self._i < self._full) else self._hp
                if c > left and not first:
                    break
                if self._hash_unit():
                    spent += c
                    if spent > self.largest:
                        self.largest = spent
                    return True
            first = False
            spent += c
            left -= c
        if spent > self.largest:
            self.largest = spent
        return False

    def finish(self):
        """The rest of the frame at once (a command result must follow the
        batch being sealed: sequence numbers in order on the wire)."""
        if self._ph == _P_CTR:
            self._ctr.blocks(self.out, self.off + HEADER, self.n, self._i, self._nb - self._i)
            self._i = 0
            self._ph = _P_MAC
            self._mac.start()
        while self.busy:
            self._hash_unit()

    def _hash_unit(self):
        """One compression of the HMAC; True when the tag is in the frame."""
        ph = self._ph
        out = self.out
        o = self.off
        i = self._i
        m = self._m
        full = m >> 6
        if ph == _P_MAC:
            if i < full:
                self._mac.block(out, o + 64 * i)
                self._i = i + 1
                return False
            k = m - 64 * full
            self._mac.tail(0, out, o + 64 * full, k, m)
            self._ph = _P_TAIL2 if k >= 56 else _P_OUTER
            return False
        if ph == _P_TAIL2:
            self._mac.tail(1, out, o + 64 * full, m - 64 * full, m)
            self._ph = _P_OUTER
            return False
        self._mac.finish(out, o + m, TAG >> 2)
        self._ph = _P_IDLE
        self.busy = False
        return True
