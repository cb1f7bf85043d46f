"""Sealed records of the charger <-> platform link (issue 13, C-2).

A record is encrypted with a block cipher in CTR mode and then authenticated
(encrypt-then-MAC), with a per-direction sequence number that must strictly
increase.  Layout (docs/security.md, "C-2 record layout"):

    0  suite      1 = sm (SM4-CTR + HMAC-SM3), 2 = aes (AES-128-CTR + HMAC-SHA256)
    1  type       1 telemetry batch, 2 stop command, 3 command result
    2  seq        64-bit big-endian, per direction, first record 1
   10  length     16-bit big-endian, bytes of ciphertext
   12  ciphertext
    .  tag        first 16 bytes of HMAC(mac key, bytes 0 .. end of ciphertext)

CTR counter block: seq (8 bytes) | 0 0 0 0 | block index (32-bit BE); the
keys are per direction, so a (key, counter) pair never repeats while the
sequence number does not.  ``open`` refuses, and counts by reason, a frame
that is truncated or whose length field disagrees (``short``), whose tag
does not verify (``tag``: tampered, forged or another key), and whose
sequence number is not above the last accepted one (``replay``: replayed
or reordered).  The caller turns a refusal into an intrusion event."""
import struct
import micropython
from array import array
from micropython import const

SUITE_SM = const(1)
SUITE_AES = const(2)
T_TELEMETRY = const(1)
T_STOP = const(2)
T_RESULT = const(3)
T_TELEMETRY_DELTA = const(5)   # telemetry batch of delta entries (security/linkservice.py)
HEADER = const(12)
TAG = const(16)
MAX_PAYLOAD = const(4096)

REJECT_SHORT = "short"
REJECT_TAG = "tag"
REJECT_REPLAY = "replay"

# Scratch shared by every Mac, both directions (a call uses it only
# while it runs: a seal's steps keep nothing there); the hash's made by the
# first Mac, so that importing the constants costs no buffers.
_w = None           # hash message schedule, 68 words
_blk = None         # HMAC padding / outer block, 64 bytes


@micropython.viper
def _copy(dst: ptr8, do: int, src: ptr8, so: int, n: int):
    """dst[do:do+n] = src[so:so+n], ascending (a move down the same buffer is safe)."""
    i = 0
    while i < n:
        dst[do + i] = src[so + i]
        i += 1


@micropython.viper
def _fill(dst: ptr8, o: int, n: int, x: int):
    i = 0
    while i < n:
        dst[o + i] = x
        i += 1


@micropython.viper
def _xor(buf: ptr8, o: int, ks: ptr8, n: int):
    """buf[o:o+n] ^= ks[0:n] (n <= 16)."""
    k = 0
    while k < n:
        buf[o + k] = buf[o + k] ^ ks[k]
        k += 1


@micropython.viper
def _words(dst: ptr32, src: ptr32, n: int):
    i = 0
    while i < n:
        dst[i] = src[i]
        i += 1


@micropython.viper
def _be(dst: ptr8, o: int, v: ptr32, n: int):
    """The first ``n`` words of ``v`` big-endian into dst[o:o+4n]."""
    i = 0
    while i < n:
        x = uint(v[i])
        dst[o] = x >> 24
        dst[o + 1] = x >> 16
        dst[o + 2] = x >> 8
        dst[o + 3] = x
        o += 4
        i += 1


def _pack_seq(buf, off, seq):
    # a sequence number below 2**30 is a small int on every port: packed
    # without the big-integer masks (which would allocate on a 32-bit board)
    if seq <= 0x3FFFFFFF:
        struct.pack_into(">II", buf, off, 0, seq)
    else:
        struct.pack_into(">II", buf, off, (seq >> 32) & 0xFFFFFFFF, seq & 0xFFFFFFFF)


def _hash(suite):
    """(compression function, IV) of the suite's hash."""
    if suite == SUITE_SM:
        from security.sm3 import _compress, _IV
        return _compress, _IV
    from security.sha256 import _compress, IV
    return _compress, IV


class Mac:
    """HMAC (RFC 2104) over SM3 (suite sm) or SHA-256 (suite aes), block 64
    bytes.  The key's inner and outer chaining values are computed once
    (at link-up); a message is hashed in place (buffer + offset), one
    compression per call, so that a seal can be cut into steps.  Nothing
    is allocated after ``__init__``.  The message schedule and the padding
    block are the module's ``_w`` and ``_blk``, shared by every ``Mac``."""

    def __init__(self, suite, key):
        global _w, _blk
        comp, iv = _hash(suite)
        if len(key) > 64:
            if suite == SUITE_SM:
                from security.sm3 import sm3
                key = sm3(key)
            else:
                from security.hmac256 import sha256
                key = sha256(key)
        if _w is None:
            _w = array("I", bytes(4 * 68))      # SM3: 68 words
            _blk = bytearray(64)
        self._comp = comp
        self._w = _w                            # message schedule (shared)
        self.v = array("I", iv)                 # running chaining value
        self._ki = array("I", iv)
        self._ko = array("I", iv)
        blk = _blk
        self._blk = blk                         # padding / outer block (shared)
        nk = len(key)
        for x, st in ((0x36, self._ki), (0x5C, self._ko)):
            for i in range(64):
                blk[i] = (key[i] if i < nk else 0) ^ x
            comp(st, blk, 0, self._w)

    def start(self):
        _words(self.v, self._ki, 8)

    def block(self, buf, off):
        """One full 64-byte block of the message, buf[off:off+64]."""
        self._comp(self.v, buf, off, self._w)

    def tail(self, unit, buf, off, k, n):
        """Padding of an ``n``-byte message whose last ``k`` (< 64) bytes are
        buf[off:off+k]: unit 0 compresses them with the 0x80 marker (and
        the length when k < 56), unit 1 the length-only block (k >= 56)."""
        blk = self._blk
        if unit == 0:
            _copy(blk, 0, buf, off, k)
            blk[k] = 0x80
            _fill(blk, k + 1, 63 - k, 0)
            if k >= 56:
                self._comp(self.v, blk, 0, self._w)
                return
        else:
            _fill(blk, 0, 56, 0)
        bits = (64 + n) * 8                 # the key block counts (ipad)
        struct.pack_into(">II", blk, 56, 0, bits)
        self._comp(self.v, blk, 0, self._w)

    def finish(self, out, off, words):
        """The outer hash; its first ``words`` 32-bit words into out[off:]."""
        blk = self._blk
        _be(blk, 0, self.v, 8)
        blk[32] = 0x80
        _fill(blk, 33, 31, 0)
        blk[62] = 0x03                      # length 64 + 32 bytes = 768 bits
        _words(self.v, self._ko, 8)
        self._comp(self.v, blk, 0, self._w)
        _be(out, off, self.v, words)

    def mac_into(self, buf, off, n, out, o, words):
        """All of it at once: HMAC of buf[off:off+n] into out[o:o+4*words]."""
        self.start()
        full = n >> 6
        for i in range(full):
            self.block(buf, off + 64 * i)
        k = n - 64 * full
        self.tail(0, buf, off + 64 * full, k, n)
        if k >= 56:
            self.tail(1, buf, off + 64 * full, k, n)
        self.finish(out, o, words)


def hmac_sm3(key, *parts):
    """HMAC (RFC 2104) over SM3, 32 bytes (the record layer's MAC, whole)."""
    msg = b"".join(parts)
    out = bytearray(32)
    Mac(SUITE_SM, key).mac_into(msg, 0, len(msg), out, 0, 8)
    return bytes(out)


def _cipher(suite, key):
    if suite == SUITE_SM:
        from security.sm4 import SM4
        return SM4(key)
    if suite == SUITE_AES:
        from security.aes128 import AES128
        return AES128(key)
    raise ValueError("unknown suite %r" % (suite,))


class CTR:
    """Counter mode over a forward block cipher (``encrypt_into``), in place
    and block by block; the counter and keystream blocks are preallocated."""

    def __init__(self, cipher):
        self._c = cipher
        self._ctr = bytearray(16)
        self._ks = bytearray(16)

    def start(self, seq):
        """The counter block of record ``seq`` (block index set per block)."""
        _pack_seq(self._ctr, 0, seq)

    def blocks(self, buf, off, n, i, count):
        """XOR keystream blocks i .. i+count-1 onto the ``n``-byte text at
        buf[off:off+n], in place (the last block may be partial)."""
        ctr = self._ctr
        ks = self._ks
        c = self._c
        end = i + count
        while i < end:
            struct.pack_into(">I", ctr, 12, i)
            c.encrypt_into(ctr, ks)
            k = n - 16 * i
            _xor(buf, off + 16 * i, ks, k if k < 16 else 16)
            i += 1

    def crypt_into(self, seq, src, dst):
        """XOR ``src`` with the keystream of record ``seq`` into ``dst``
        (same length; may be the same buffer).  Encrypts and decrypts."""
        n = len(src)
        if dst is not src:
            _copy(dst, 0, src, 0, n)
        self.start(seq)
        self.blocks(dst, 0, n, 0, (n + 15) >> 4)


class Direction:
    """One direction of the link: its cipher (key schedule done here, once),
    its MAC (keyed chaining values, once) and its sequence number.
    ``ctr``: the counter mode over its cipher already made (``cipher_of``:
    the handshake makes the key schedule and the MAC in steps of their
    own); then ``enc_key`` is not used."""

    def __init__(self, suite, enc_key, mac_key, ctr=None):
        self.suite = suite
        self.ctr = ctr or CTR(_cipher(suite, enc_key))
        self.mac = Mac(suite, mac_key)
        self.seq = 0                # last sent (tx) or last accepted (rx)


def cipher_of(suite, enc_key):
    """The counter mode over the suite's cipher keyed with ``enc_key`` (a
    ``Direction``'s first half)."""
    return CTR(_cipher(suite, enc_key))


class RecordLayer:
    """Both directions of an established link (keys from the handshake).
    ``tx``, ``rx``: directions already made (the handshake makes their key
    schedules in steps of their own); then their keys are not used."""

    def __init__(self, suite, tx_keys, rx_keys, tx=None, rx=None):
        self.tx = tx or Direction(suite, tx_keys[0], tx_keys[1])
        self.rx = rx or Direction(suite, rx_keys[0], rx_keys[1])
        self.suite = suite
        from security.linkseal import Sealer    # the link is up: now, not at import
        self.sealer = Sealer(self)
        self._tag = bytearray(TAG)
        self.rejected = {REJECT_SHORT: 0, REJECT_TAG: 0, REJECT_REPLAY: 0}
        self.last_reject = None

    def seal(self, rtype, payload):
        """The sealed frame (bytes) carrying ``payload`` as record ``rtype``
        (the stepped sealer run to completion)."""
        n = len(payload)
        if n > MAX_PAYLOAD:
            raise ValueError("record payload too long")
        out = bytearray(HEADER + n + TAG)
        s = self.sealer
        s.begin(rtype, payload, 0, n, out, 0)
        s.finish()
        return bytes(out)

    def _refuse(self, why):
        self.rejected[why] += 1
        self.last_reject = why
        return None

    def open(self, frame):
        """``(type, payload)`` of a genuine, fresh frame; None (counted in
        ``rejected``, reason in ``last_reject``) otherwise."""
        from security.hmac256 import equal
        if len(frame) < HEADER + TAG:
            return self._refuse(REJECT_SHORT)
        suite, rtype, hi, lo, n = struct.unpack_from(">BBIIH", frame, 0)
        if len(frame) != HEADER + n + TAG:
            return self._refuse(REJECT_SHORT)
        d = self.rx
        if suite != self.suite:
            return self._refuse(REJECT_TAG)
        tag = self._tag
        d.mac.mac_into(frame, 0, HEADER + n, tag, 0, TAG >> 2)
        if not equal(tag, memoryview(frame)[HEADER + n:]):
            return self._refuse(REJECT_TAG)
        seq = (hi << 32) | lo
        if seq <= d.seq:
            return self._refuse(REJECT_REPLAY)
        d.seq = seq
        out = bytearray(n)
        d.ctr.crypt_into(seq, memoryview(frame)[HEADER:HEADER + n], out)
        return rtype, bytes(out)
