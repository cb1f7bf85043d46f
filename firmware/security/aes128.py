"""AES-128 block cipher (FIPS 197), forward direction, for the fallback
suite of the platform link (issue 13, C-2).

``AES128(key)`` uses the port's ``cryptolib.aes`` (ECB) when it has one
(unix, stm32, esp32 builds with ``MICROPY_PY_CRYPTOLIB``) and the viper
implementation below otherwise (the qemu target image has no cryptolib, so
the pure code is what the target measurement runs).  CTR mode needs only the
forward cipher (security/linkrec.py).  The S-box is computed once from its
definition (multiplicative inverse in GF(2^8) + affine map) instead of being
stored, and from it, at the first key, one 256-word round table (1 KB of
heap): a round is 16 table words, rotated per row, on 32-bit columns instead
of byte-wise SubBytes/ShiftRows/MixColumns (~3x fewer instructions a block,
so that a seal step of the record layer holds more than one block).
Checked against FIPS 197 appendix C.1 and pycryptodomex on the host
(tests/mp/test_security_link.py, tests/test_security_host.py)."""
import micropython
from array import array

try:
    import cryptolib
except ImportError:
    cryptolib = None

_sbox = None
_te = None


def _make_sbox():
    box = bytearray(256)
    p = q = 1
    # p walks the multiplicative group by 3, q by its inverse (1/3): q = 1/p.
    while True:
        p = p ^ ((p << 1) & 0xFF) ^ (0x1B if p & 0x80 else 0)
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        x = q ^ ((q << 1) | (q >> 7)) ^ ((q << 2) | (q >> 6)) ^ \
            ((q << 3) | (q >> 5)) ^ ((q << 4) | (q >> 4))
        box[p] = (x ^ 0x63) & 0xFF
        if p == 1:
            break
    box[0] = 0x63
    return bytes(box)


@micropython.viper
def _block(rk: ptr32, te: ptr32, sb: ptr8, src: ptr8, dst: ptr8):
    """One block: a column a 32-bit word (row 0 in the top byte), each of
    rounds 1..9 one table word per state byte (``te``: SubBytes and
    MixColumns of a byte, rotated for its row), the last round the S-box
    alone; ``rk``: the 44 words of the expanded key."""
    M = uint(0xFFFFFFFF)
    s0 = ((uint(src[0]) << 24) | (uint(src[1]) << 16) | (uint(src[2]) << 8) | uint(src[3])) ^ uint(rk[0])
    s1 = ((uint(src[4]) << 24) | (uint(src[5]) << 16) | (uint(src[6]) << 8) | uint(src[7])) ^ uint(rk[1])
    s2 = ((uint(src[8]) << 24) | (uint(src[9]) << 16) | (uint(src[10]) << 8) | uint(src[11])) ^ uint(rk[2])
    s3 = ((uint(src[12]) << 24) | (uint(src[13]) << 16) | (uint(src[14]) << 8) | uint(src[15])) ^ uint(rk[3])
    k = 4
    while k < 40:
        # ShiftRows: row j of column c comes from column c + j
        a = uint(te[s0 >> 24])
        x = uint(te[(s1 >> 16) & 0xFF])
        a ^= ((x >> 8) | (x << 24)) & M
        x = uint(te[(s2 >> 8) & 0xFF])
        a ^= ((x >> 16) | (x << 16)) & M
        x = uint(te[s3 & 0xFF])
        a ^= ((x >> 24) | (x << 8)) & M
        b = uint(te[s1 >> 24])
        x = uint(te[(s2 >> 16) & 0xFF])
        b ^= ((x >> 8) | (x << 24)) & M
        x = uint(te[(s3 >> 8) & 0xFF])
        b ^= ((x >> 16) | (x << 16)) & M
        x = uint(te[s0 & 0xFF])
        b ^= ((x >> 24) | (x << 8)) & M
        c = uint(te[s2 >> 24])
        x = uint(te[(s3 >> 16) & 0xFF])
        c ^= ((x >> 8) | (x << 24)) & M
        x = uint(te[(s0 >> 8) & 0xFF])
        c ^= ((x >> 16) | (x << 16)) & M
        x = uint(te[s1 & 0xFF])
        c ^= ((x >> 24) | (x << 8)) & M
        d = uint(te[s3 >> 24])
        x = uint(te[(s0 >> 16) & 0xFF])
        d ^= ((x >> 8) | (x << 24)) & M
        x = uint(te[(s1 >> 8) & 0xFF])
        d ^= ((x >> 16) | (x << 16)) & M
        x = uint(te[s2 & 0xFF])
        d ^= ((x >> 24) | (x << 8)) & M
        s0 = a ^ uint(rk[k])
        s1 = b ^ uint(rk[k + 1])
        s2 = c ^ uint(rk[k + 2])
        s3 = d ^ uint(rk[k + 3])
        k += 4
    a = ((uint(sb[s0 >> 24]) << 24) | (uint(sb[(s1 >> 16) & 0xFF]) << 16) |
         (uint(sb[(s2 >> 8) & 0xFF]) << 8) | uint(sb[s3 & 0xFF])) ^ uint(rk[40])
    b = ((uint(sb[s1 >> 24]) << 24) | (uint(sb[(s2 >> 16) & 0xFF]) << 16) |
         (uint(sb[(s3 >> 8) & 0xFF]) << 8) | uint(sb[s0 & 0xFF])) ^ uint(rk[41])
    c = ((uint(sb[s2 >> 24]) << 24) | (uint(sb[(s3 >> 16) & 0xFF]) << 16) |
         (uint(sb[(s0 >> 8) & 0xFF]) << 8) | uint(sb[s1 & 0xFF])) ^ uint(rk[42])
    d = ((uint(sb[s3 >> 24]) << 24) | (uint(sb[(s0 >> 16) & 0xFF]) << 16) |
         (uint(sb[(s1 >> 8) & 0xFF]) << 8) | uint(sb[s2 & 0xFF])) ^ uint(rk[43])
    dst[0] = a >> 24
    dst[1] = a >> 16
    dst[2] = a >> 8
    dst[3] = a
    dst[4] = b >> 24
    dst[5] = b >> 16
    dst[6] = b >> 8
    dst[7] = b
    dst[8] = c >> 24
    dst[9] = c >> 16
    dst[10] = c >> 8
    dst[11] = c
    dst[12] = d >> 24
    dst[13] = d >> 16
    dst[14] = d >> 8
    dst[15] = d


def _make_te(sb):
    """The round table: for each byte x, the column (2s, s, s, 3s) of
    s = S(x) (MixColumns of SubBytes for row 0; other rows rotate it)."""
    te = array("I", bytes(1024))
    for x in range(256):
        v = sb[x]
        v2 = ((v << 1) ^ (0x1B if v & 0x80 else 0)) & 0xFF
        te[x] = (v2 << 24) | (v << 16) | (v << 8) | (v2 ^ v)
    return te


class AES128:
    """One key, forward direction.  ``pure=True`` forces the viper code even
    where cryptolib exists (tests and the target measurement)."""

    def __init__(self, key, pure=False):
        global _sbox, _te
        if len(key) != 16:
            raise ValueError("AES-128 key is 16 bytes")
        self._ecb = None
        if cryptolib is not None and not pure:
            self._ecb = cryptolib.aes(bytes(key), 1)
            return
        if _sbox is None:
            _sbox = _make_sbox()
            _te = _make_te(_sbox)
        rk = bytearray(176)
        rk[0:16] = key
        rcon = 1
        for i in range(16, 176, 4):
            a, b, c, d = rk[i - 4], rk[i - 3], rk[i - 2], rk[i - 1]
            if i % 16 == 0:
                a, b, c, d = _sbox[b] ^ rcon, _sbox[c], _sbox[d], _sbox[a]
                rcon = ((rcon << 1) ^ (0x1B if rcon & 0x80 else 0)) & 0xFF
            rk[i] = rk[i - 16] ^ a
            rk[i + 1] = rk[i - 15] ^ b
            rk[i + 2] = rk[i - 14] ^ c
            rk[i + 3] = rk[i - 13] ^ d
        w = array("I", bytes(176))
        for i in range(44):
            w[i] = (rk[4 * i] << 24) | (rk[4 * i + 1] << 16) | (rk[4 * i + 2] << 8) | rk[4 * i + 3]
        self._rk = w

    def encrypt_into(self, src, dst):
        """Encipher the 16-byte block ``src`` into ``dst`` (may be the same buffer)."""
        if self._ecb is not None:
            self._ecb.encrypt(src, dst)
        else:
            _block(self._rk, _te, _sbox, src, dst)

    def encrypt(self, block):
        out = bytearray(16)
        self.encrypt_into(block, out)
        return bytes(out)
