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
from micropython import const

SUITE_SM = const(1)
SUITE_AES = const(2)
T_TELEMETRY = const(1)
T_STOP = const(2)
T_RESULT = const(3)
HEADER = const(12)
TAG = const(16)
MAX_PAYLOAD = const(4096)

REJECT_SHORT = "short"
REJECT_TAG = "tag"
REJECT_REPLAY = "replay"


def hmac_sm3(key, *parts):
    """HMAC (RFC 2104) over SM3, block 64 bytes."""
    from security.sm3 import SM3, sm3
    if len(key) > 64:
        key = sm3(key)
    ip = bytearray(64)
    op = bytearray(64)
    for i in range(len(key)):
        ip[i] = key[i]
        op[i] = key[i]
    for i in range(64):
        ip[i] ^= 0x36
        op[i] ^= 0x5C
    h = SM3(ip)
    for p in parts:
        h.update(p)
    return SM3(op).update(h.digest()).digest()


def _mac_fn(suite):
    if suite == SUITE_SM:
        return hmac_sm3
    from security.hmac256 import hmac_sha256
    return hmac_sha256


def _cipher(suite, key):
    if suite == SUITE_SM:
        from security.sm4 import SM4
        return SM4(key)
    if suite == SUITE_AES:
        from security.aes128 import AES128
        return AES128(key)
    raise ValueError("unknown suite %r" % (suite,))


@micropython.viper
def _xor(dst: ptr8, src: ptr8, ks: ptr8, i: int, n: int):
    """dst[i:i+n] = src[i:i+n] ^ ks[0:n] (n <= 16)."""
    k = 0
    while k < n:
        dst[i + k] = src[i + k] ^ ks[k]
        k += 1


class CTR:
    """Counter mode over a forward block cipher (``encrypt_into``); the
    counter and keystream blocks are preallocated."""

    def __init__(self, cipher):
        self._c = cipher
        self._ctr = bytearray(16)
        self._ks = bytearray(16)

    def crypt_into(self, seq, src, dst):
        """XOR ``src`` with the keystream of record ``seq`` into ``dst``
        (same length; may be the same buffer).  Encrypts and decrypts."""
        ctr = self._ctr
        ks = self._ks
        struct.pack_into(">IIII", ctr, 0, (seq >> 32) & 0xFFFFFFFF, seq & 0xFFFFFFFF, 0, 0)
        n = len(src)
        i = 0
        blk = 0
        while i < n:
            struct.pack_into(">I", ctr, 12, blk)
            self._c.encrypt_into(ctr, ks)
            k = n - i if n - i < 16 else 16
            _xor(dst, src, ks, i, k)
            i += k
            blk += 1


class Direction:
    """One direction of the link: its cipher key, MAC key and sequence."""

    def __init__(self, suite, enc_key, mac_key):
        self.suite = suite
        self._ctr = CTR(_cipher(suite, enc_key))
        self._mac_key = bytes(mac_key)
        self._mac = _mac_fn(suite)
        self.seq = 0                # last sent (tx) or last accepted (rx)


class RecordLayer:
    """Both directions of an established link (keys from the handshake)."""

    def __init__(self, suite, tx_keys, rx_keys):
        self.tx = Direction(suite, tx_keys[0], tx_keys[1])
        self.rx = Direction(suite, rx_keys[0], rx_keys[1])
        self.suite = suite
        self.rejected = {REJECT_SHORT: 0, REJECT_TAG: 0, REJECT_REPLAY: 0}
        self.last_reject = None

    def seal(self, rtype, payload):
        """The sealed frame (bytes) carrying ``payload`` as record ``rtype``."""
        n = len(payload)
        if n > MAX_PAYLOAD:
            raise ValueError("record payload too long")
        d = self.tx
        d.seq += 1
        out = bytearray(HEADER + n + TAG)
        struct.pack_into(">BBIIH", out, 0, self.suite, rtype,
                         (d.seq >> 32) & 0xFFFFFFFF, d.seq & 0xFFFFFFFF, n)
        mv = memoryview(out)
        d._ctr.crypt_into(d.seq, payload, mv[HEADER:HEADER + n])
        out[HEADER + n:] = d._mac(d._mac_key, mv[:HEADER + n])[:TAG]
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
        mv = memoryview(frame)
        if suite != self.suite or not equal(d._mac(d._mac_key, mv[:HEADER + n])[:TAG],
                                             mv[HEADER + n:]):
            return self._refuse(REJECT_TAG)
        seq = (hi << 32) | lo
        if seq <= d.seq:
            return self._refuse(REJECT_REPLAY)
        d.seq = seq
        out = bytearray(n)
        d._ctr.crypt_into(seq, mv[HEADER:HEADER + n], out)
        return rtype, bytes(out)
