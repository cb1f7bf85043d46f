"""The platform link's telemetry batch queue (issue 13, C-2): ``BatchQueue``.

The records pass puts each telemetry record into the open batch; a batch
is cut (closed) when the next record does not fit, or by the link task
(``sec.batch_fill`` bytes, ``sec.batch_ms`` after its first record); the
sealing task takes the cut batches in order (``load``), one in the frame
buffer at a time.  Everything lives in preallocated buffers: putting a
record is one machine-code call and allocates nothing.

Delta entries (``sec.tel_delta`` 1, sealed record type
``T_TELEMETRY_DELTA``; docs/security.md "Telemetry batches"): a record
goes into the batch as the bytes that differ from its reference: the
batch's last record of the same length, or for a length new in the batch
the batch's previous record (cut or padded with zeros to n; zeros for the
batch's first record).  An entry: the length n; the group mask,
ceil(ceil(n/8)/8) bytes (bit g of byte g>>3: the 8 bytes from 8g have a
change); for each group in the mask, in order, its byte mask (bit i: byte
8g+i differs); then the bytes that differ, in order.  A demand record
that differs from the last one in its sequence number, times and CRC
(5-6 bytes) is an 11-12 byte entry.  Each batch decodes on
its own (the platform: host_tools/platform/seclink.py ``expand_delta``)
and is padded with zeros to whole 16-byte blocks (an entry of length 0
ends it), so that its frame has one of 13 lengths.  Table 1's charging
records (80 B demand every 50 ms, 92 B status every 250 ms) repeat the
header's charger id, region, VIN, date and most values: ~2 KB/s of records
become ~0.6 KB/s to seal, which is the link's CPU while charging.
``sec.tel_delta`` 0: the records go as they are (``T_TELEMETRY``)."""
import micropython
from array import array
from micropython import const
from security.linkrec import HEADER, _copy, _fill

BATCH_MAX = const(220)        # bytes of a plain batch (envelope 2 + header 12 + 220 + tag 16 <= 251)
DELTA_MAX = const(208)        # ... of a delta batch, padded to 16-byte blocks
REF_MAX = const(96)           # a reference slot: the longest Table-1 record is 92 B (longer: dropped)
_BUF = const(480)             # records waiting: the cut batches and the open one
CUTS = const(4)               # cut batches waiting for the sealer, at most
_NREF = const(3)              # reference slots (lengths in a batch: demand, status, event)

# the queue's state, one int array (read and written by machine code)
_N = const(0)                 # bytes in the buffer (cut batches + the open one)
_CN = const(1)                # ... of them cut
_OC = const(2)                # records in the open batch
_NC = const(3)                # cut batches waiting
_QH = const(4)                # ring index of the first
_LAST = const(5)              # reference slot of the open batch's last record
_RNEXT = const(6)             # reference slot a new length takes next
_BMAX = const(7)              # DELTA_MAX or BATCH_MAX
_DELTA = const(8)
_QN = const(9)

PUT_OK = const(0)             # stored
PUT_FIRST = const(1)          # stored, the first record of the open batch
PUT_CUT = const(2)            # the open batch was full: cut, and the record opens the next
PUT_DROP = const(3)           # not stored: the queue is full (or the record is too long)
_FULL = const(4)


class BatchQueue:
    def __init__(self, delta):
        self.delta = delta
        self.buf = bytearray(_BUF)
        q = self.q = array("i", bytes(4 * _QN))
        q[_BMAX] = DELTA_MAX if delta else BATCH_MAX
        q[_DELTA] = delta
        self.refs = bytearray(_NREF * REF_MAX if delta else 0)
        self.rlen = bytearray(_NREF + (REF_MAX >> 3))    # lengths, then a byte-mask scratch
        self.cut_len = array("H", bytes(2 * CUTS))
        self.cut_cnt = bytearray(CUTS)

    def put(self, mv):
        """Record ``mv`` into the open batch: ``PUT_*``."""
        r = _put(self.buf, self.q, mv, len(mv), self.refs, self.rlen)
        if r == _FULL:
            self.cut()
            r = _put(self.buf, self.q, mv, len(mv), self.refs, self.rlen)
            if r != PUT_DROP:
                r = PUT_CUT
        return r

    def open_bytes(self):
        q = self.q
        return q[_N] - q[_CN]

    def waiting(self):
        """Cut batches waiting for the sealer."""
        return self.q[_NC]

    def cut(self):
        """Close the open batch (the references start again); False when
        there is nothing to cut or ``CUTS`` batches already wait."""
        q = self.q
        if q[_N] == q[_CN] or q[_NC] >= CUTS:
            return False
        i = (q[_QH] + q[_NC]) % CUTS
        self.cut_len[i] = q[_N] - q[_CN]
        self.cut_cnt[i] = q[_OC]
        q[_NC] += 1
        q[_CN] = q[_N]
        q[_OC] = 0
        q[_RNEXT] = 0
        rl = self.rlen
        for i in range(_NREF):
            rl[i] = 0
        return True

    def load(self, sealer, rtype, fb, off):
        """The first cut batch into ``fb[off:]`` through ``sealer.begin``
        (padded with zeros to whole blocks when delta), its record count
        into ``fb[off - 1]`` (the link envelope's count); the queue moves
        down.  Returns the count."""
        q = self.q
        h = q[_QH]
        j = self.cut_len[h]
        c = self.cut_cnt[h]
        q[_QH] = (h + 1) % CUTS
        q[_NC] -= 1
        fb[off - 1] = c
        if self.delta:
            p = (j + 15) & ~15
            sealer.begin(rtype, self.buf, 0, p, fb, off)
            _fill(fb, off + HEADER + j, p - j, 0)
        else:
            sealer.begin(rtype, self.buf, 0, j, fb, off)
        rest = q[_N] - j
        if rest:
            _copy(self.buf, 0, self.buf, j, rest)      # down: ascending is safe
        q[_N] = rest
        q[_CN] -= j
        return c

    def clear(self):
        q = self.q
        for i in range(_BMAX):
            q[i] = 0
        rl = self.rlen
        for i in range(_NREF):
            rl[i] = 0


@micropython.viper
def _put(buf: ptr8, q: ptr32, src: ptr8, n: int, refs: ptr8, rlen: ptr8) -> int:
    k = q[_N]
    cn = q[_CN]
    bmax = q[_BMAX]
    delta = q[_DELTA]
    worst = n
    if delta:
        worst = n + 1 + ((n + 63) >> 6) + ((n + 7) >> 3)
        if n > REF_MAX:
            return PUT_DROP
    if k + worst > _BUF or worst > bmax:
        return PUT_DROP
    full = k - cn + worst > bmax
    if full and q[_NC] >= CUTS:
        return PUT_DROP
    oc = q[_OC]
    if not delta:
        if full:
            return _FULL
        i = 0
        while i < n:
            buf[k + i] = src[i]
            i += 1
        q[_N] = k + n
        q[_OC] = oc + 1
        return PUT_FIRST if oc == 0 else PUT_OK
    # the reference slot: the batch's last record of this length, or a
    # new one seeded from the batch's last record (zeros for its first)
    s = 0
    while s < _NREF:
        if rlen[s] == n:
            break
        s += 1
    r = 0
    if s == _NREF:
        s = q[_RNEXT]
        q[_RNEXT] = s + 1 if s + 1 < _NREF else 0
        last = q[_LAST]
        m = 0
        if oc:
            m = rlen[last]
        f = last * REF_MAX
        r = s * REF_MAX
        if r != f:
            j = 0
            while j < n:
                if j < m:
                    refs[r + j] = refs[f + j]
                else:
                    refs[r + j] = 0
                j += 1
        else:
            j = m
            while j < n:
                refs[r + j] = 0
                j += 1
        rlen[s] = n
    r = s * REF_MAX
    q[_LAST] = s
    # the entry: the byte masks first (scratch: rlen[_NREF:]), then n, the
    # group mask, the byte masks of the groups with a change, the bytes
    nb = (n + 7) >> 3
    ng = (nb + 7) >> 3
    j = 0
    while j < nb:
        rlen[_NREF + j] = 0
        j += 1
    j = 0
    while j < n:
        if src[j] != refs[r + j]:
            rlen[_NREF + (j >> 3)] |= 1 << (j & 7)
        j += 1
    buf[k] = n
    j = 0
    while j < ng:
        buf[k + 1 + j] = 0
        j += 1
    e = k + 1 + ng
    g = 0
    while g < nb:
        if rlen[_NREF + g]:
            buf[k + 1 + (g >> 3)] |= 1 << (g & 7)
            buf[e] = rlen[_NREF + g]
            e += 1
        g += 1
    g = 0
    while g < nb:
        m = rlen[_NREF + g]
        if m:
            j = g << 3
            while m:
                if m & 1:
                    v = src[j]
                    buf[e] = v
                    e += 1
                    refs[r + j] = v
                m >>= 1
                j += 1
        g += 1
    if e - cn > bmax:
        return _FULL                # (the references are reset by the cut)
    q[_N] = e
    q[_OC] = oc + 1
    return PUT_FIRST if oc == 0 else PUT_OK

