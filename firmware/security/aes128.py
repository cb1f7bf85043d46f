"""AES-128 block cipher (FIPS 197), forward direction, for the fallback
suite of the platform link (issue 13, C-2).

``AES128(key)`` uses the port's ``cryptolib.aes`` (ECB) when it has one
(unix, stm32, esp32 builds with ``MICROPY_PY_CRYPTOLIB``) and the viper
implementation below otherwise (the qemu target image has no cryptolib, so
the pure code is what the target measurement runs).  CTR mode needs only the
forward cipher (security/ctr.py).  The S-box is computed once from its
definition (multiplicative inverse in GF(2^8) + affine map) instead of being
stored.  Checked against FIPS 197 appendix C.1 and pycryptodomex on the host
(tests/mp/test_security_link.py, tests/test_security_host.py)."""
import micropython

try:
    import cryptolib
except ImportError:
    cryptolib = None

_sbox = None


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
def _block(rk: ptr8, sb: ptr8, src: ptr8, dst: ptr8, t: ptr8):
    """One block: 10 rounds with the expanded key ``rk`` (176 bytes);
    ``t``: 32 bytes of scratch (state + shifted state)."""
    i = 0
    while i < 16:
        t[i] = src[i] ^ rk[i]
        i += 1
    r = 1
    while r <= 10:
        # SubBytes + ShiftRows: row j of column c comes from column c + j.
        c = 0
        while c < 4:
            j = 0
            while j < 4:
                t[16 + 4 * c + j] = sb[t[4 * ((c + j) & 3) + j]]
                j += 1
            c += 1
        k = 16 * r
        if r < 10:
            c = 0
            while c < 4:
                a0 = int(t[16 + 4 * c])
                a1 = int(t[17 + 4 * c])
                a2 = int(t[18 + 4 * c])
                a3 = int(t[19 + 4 * c])
                x = a0 ^ a1 ^ a2 ^ a3
                y = a0 ^ a1
                y = ((y << 1) ^ (0x1B if y & 0x80 else 0)) & 0xFF
                t[4 * c] = a0 ^ x ^ y ^ rk[k + 4 * c]
                y = a1 ^ a2
                y = ((y << 1) ^ (0x1B if y & 0x80 else 0)) & 0xFF
                t[4 * c + 1] = a1 ^ x ^ y ^ rk[k + 4 * c + 1]
                y = a2 ^ a3
                y = ((y << 1) ^ (0x1B if y & 0x80 else 0)) & 0xFF
                t[4 * c + 2] = a2 ^ x ^ y ^ rk[k + 4 * c + 2]
                y = a3 ^ a0
                y = ((y << 1) ^ (0x1B if y & 0x80 else 0)) & 0xFF
                t[4 * c + 3] = a3 ^ x ^ y ^ rk[k + 4 * c + 3]
                c += 1
        else:
            i = 0
            while i < 16:
                dst[i] = t[16 + i] ^ rk[k + i]
                i += 1
        r += 1


class AES128:
    """One key, forward direction.  ``pure=True`` forces the viper code even
    where cryptolib exists (tests and the target measurement)."""

    def __init__(self, key, pure=False):
        global _sbox
        if len(key) != 16:
            raise ValueError("AES-128 key is 16 bytes")
        self._ecb = None
        if cryptolib is not None and not pure:
            self._ecb = cryptolib.aes(bytes(key), 1)
            return
        if _sbox is None:
            _sbox = _make_sbox()
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
        self._rk = rk
        self._t = bytearray(32)

    def encrypt_into(self, src, dst):
        """Encipher the 16-byte block ``src`` into ``dst`` (may be the same buffer)."""
        if self._ecb is not None:
            self._ecb.encrypt(src, dst)
        else:
            _block(self._rk, _sbox, src, dst, self._t)

    def encrypt(self, block):
        out = bytearray(16)
        self.encrypt_into(block, out)
        return bytes(out)
