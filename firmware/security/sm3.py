"""SM3 hash (GB/T 32905-2016), written from the standard.

``sm3(data) -> 32 bytes``; ``SM3()`` with ``update``/``digest``.  The
compression function is viper (machine words, no heap) with 32-bit masks
so that it gives the same result on 64-bit ports (unix) and 32-bit boards.
Checked against the standard's examples and ``gmssl`` on the host
(tests/test_security_kat.py, tests/mp/test_security_crypto.py).
Imported only for an update or a platform handshake.
"""
import micropython
import struct
from array import array

_IV = (0x7380166F, 0x4914B2B9, 0x172442D7, 0xDA8A0600,
       0xA96F30BC, 0x163138AA, 0xE38DEE4D, 0xB0FB0E4E)


@micropython.viper
def _compress(v: ptr32, blk: ptr8, off: int, w: ptr32):
    """One 64-byte block ``blk[off:off + 64]`` into the state ``v`` (8
    words); ``w``: 68 words of scratch.  (The offset lets the record layer
    hash a frame in place, block by block, without a view per block.)"""
    M = uint(0xFFFFFFFF)
    j = 0
    while j < 16:
        k = off + 4 * j
        w[j] = (uint(blk[k]) << 24) | (uint(blk[k + 1]) << 16) | \
            (uint(blk[k + 2]) << 8) | uint(blk[k + 3])
        j += 1
    while j < 68:
        x = uint(w[j - 16]) ^ uint(w[j - 9])
        y = uint(w[j - 3])
        x ^= ((y << 15) | (y >> 17)) & M
        x = x ^ (((x << 15) | (x >> 17)) & M) ^ (((x << 23) | (x >> 9)) & M)
        y = uint(w[j - 13])
        w[j] = x ^ (((y << 7) | (y >> 25)) & M) ^ uint(w[j - 6])
        j += 1
    a = uint(v[0])
    b = uint(v[1])
    c = uint(v[2])
    d = uint(v[3])
    e = uint(v[4])
    f = uint(v[5])
    g = uint(v[6])
    h = uint(v[7])
    j = 0
    while j < 64:
        if j < 16:
            t = uint(0x79CC4519)
        else:
            t = uint(0x7A879D8A)
        r = j % 32
        if r:
            t = ((t << r) | (t >> (32 - r))) & M
        a12 = ((a << 12) | (a >> 20)) & M
        ss1 = (a12 + e + t) & M
        ss1 = ((ss1 << 7) | (ss1 >> 25)) & M
        ss2 = ss1 ^ a12
        if j < 16:
            ff = a ^ b ^ c
            gg = e ^ f ^ g
        else:
            ff = (a & b) | (a & c) | (b & c)
            gg = (e & f) | ((e ^ M) & g)
        wj = uint(w[j])
        tt1 = (ff + d + ss2 + (wj ^ uint(w[j + 4]))) & M
        tt2 = (gg + h + ss1 + wj) & M
        d = c
        c = ((b << 9) | (b >> 23)) & M
        b = a
        a = tt1
        h = g
        g = ((f << 19) | (f >> 13)) & M
        f = e
        e = tt2 ^ (((tt2 << 9) | (tt2 >> 23)) & M) ^ (((tt2 << 17) | (tt2 >> 15)) & M)
        j += 1
    v[0] = uint(v[0]) ^ a
    v[1] = uint(v[1]) ^ b
    v[2] = uint(v[2]) ^ c
    v[3] = uint(v[3]) ^ d
    v[4] = uint(v[4]) ^ e
    v[5] = uint(v[5]) ^ f
    v[6] = uint(v[6]) ^ g
    v[7] = uint(v[7]) ^ h


class SM3:
    def __init__(self, data=None):
        self._v = array("I", _IV)
        self._w = array("I", bytes(68 * 4))
        self._buf = bytearray(64)
        self._n = 0
        self._len = 0
        if data:
            self.update(data)

    def update(self, data):
        mv = memoryview(data)
        i = 0
        n = len(mv)
        self._len += n
        buf = self._buf
        while i < n:
            k = 64 - self._n
            if k > n - i:
                k = n - i
            buf[self._n:self._n + k] = mv[i:i + k]
            self._n += k
            i += k
            if self._n == 64:
                _compress(self._v, buf, 0, self._w)
                self._n = 0
        return self

    def digest(self):
        v = array("I", self._v)
        buf = bytearray(self._buf)
        n = self._n
        bits = self._len * 8
        buf[n] = 0x80
        n += 1
        for k in range(n, 64):
            buf[k] = 0
        if n > 56:
            _compress(v, buf, 0, self._w)
            for k in range(64):
                buf[k] = 0
        struct.pack_into(">II", buf, 56, (bits >> 32) & 0xFFFFFFFF, bits & 0xFFFFFFFF)
        _compress(v, buf, 0, self._w)
        out = bytearray(32)
        for k in range(8):
            struct.pack_into(">I", out, 4 * k, v[k])
        return bytes(out)


def sm3(data):
    return SM3(data).digest()
