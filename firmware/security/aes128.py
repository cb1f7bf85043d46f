"""AES-128 block cipher (FIPS 197), forward direction, for the fallback
suite of the platform link (issue 13, C-2).

``AES128(key)`` uses the port's ``cryptolib.aes`` (ECB) when it has one
(unix, stm32, esp32 builds with ``MICROPY_PY_CRYPTOLIB``) and the viper
implementation below otherwise (the qemu target image has no cryptolib, so
the pure code is what the target measurement runs).  CTR mode needs only the
forward cipher (security/linkrec.py).  A round is 16 words of a 256-word
round table, rotated per row, on 32-bit columns instead of byte-wise
SubBytes/ShiftRows/MixColumns (~3x fewer instructions a block, so that a
seal step of the record layer holds more than one block).  The S-box and
the round table are bytes constants (in flash when frozen, not on the heap:
1.3 KB of heap at charging when they were computed at the first key); they
are checked against their definition (multiplicative inverse in GF(2^8) +
affine map; MixColumns column) by tests/mp/test_security_link.py, the
cipher against FIPS 197 appendix C.1 and pycryptodomex on the host
(tests/mp/test_security_link.py, tests/test_security_host.py)."""
import micropython
import sys
from array import array

try:
    import cryptolib
except ImportError:
    cryptolib = None

# FIPS 197 figure 7, the S-box.
_sbox = (
    b"\x63\x7c\x77\x7b\xf2\x6b\x6f\xc5\x30\x01\x67\x2b\xfe\xd7\xab\x76\xca\x82\xc9\x7d\xfa\x59\x47\xf0\xad\xd4\xa2\xaf\x9c\xa4\x72\xc0"
    b"\xb7\xfd\x93\x26\x36\x3f\xf7\xcc\x34\xa5\xe5\xf1\x71\xd8\x31\x15\x04\xc7\x23\xc3\x18\x96\x05\x9a\x07\x12\x80\xe2\xeb\x27\xb2\x75"
    b"\x09\x83\x2c\x1a\x1b\x6e\x5a\xa0\x52\x3b\xd6\xb3\x29\xe3\x2f\x84\x53\xd1\x00\xed\x20\xfc\xb1\x5b\x6a\xcb\xbe\x39\x4a\x4c\x58\xcf"
    b"\xd0\xef\xaa\xfb\x43\x4d\x33\x85\x45\xf9\x02\x7f\x50\x3c\x9f\xa8\x51\xa3\x40\x8f\x92\x9d\x38\xf5\xbc\xb6\xda\x21\x10\xff\xf3\xd2"
    b"\xcd\x0c\x13\xec\x5f\x97\x44\x17\xc4\xa7\x7e\x3d\x64\x5d\x19\x73\x60\x81\x4f\xdc\x22\x2a\x90\x88\x46\xee\xb8\x14\xde\x5e\x0b\xdb"
    b"\xe0\x32\x3a\x0a\x49\x06\x24\x5c\xc2\xd3\xac\x62\x91\x95\xe4\x79\xe7\xc8\x37\x6d\x8d\xd5\x4e\xa9\x6c\x56\xf4\xea\x65\x7a\xae\x08"
    b"\xba\x78\x25\x2e\x1c\xa6\xb4\xc6\xe8\xdd\x74\x1f\x4b\xbd\x8b\x8a\x70\x3e\xb5\x66\x48\x03\xf6\x0e\x61\x35\x57\xb9\x86\xc1\x1d\x9e"
    b"\xe1\xf8\x98\x11\x69\xd9\x8e\x94\x9b\x1e\x87\xe9\xce\x55\x28\xdf\x8c\xa1\x89\x0d\xbf\xe6\x42\x68\x41\x99\x2d\x0f\xb0\x54\xbb\x16"
)

# The round table: for each byte x, the column (2s, s, s, 3s) of s = S(x)
# (MixColumns of SubBytes for row 0; the other rows rotate it), as 256
# little-endian 32-bit words.
_te = (
    b"\xa5\x63\x63\xc6\x84\x7c\x7c\xf8\x99\x77\x77\xee\x8d\x7b\x7b\xf6\x0d\xf2\xf2\xff\xbd\x6b\x6b\xd6\xb1\x6f\x6f\xde\x54\xc5\xc5\x91"
    b"\x50\x30\x30\x60\x03\x01\x01\x02\xa9\x67\x67\xce\x7d\x2b\x2b\x56\x19\xfe\xfe\xe7\x62\xd7\xd7\xb5\xe6\xab\xab\x4d\x9a\x76\x76\xec"
    b"\x45\xca\xca\x8f\x9d\x82\x82\x1f\x40\xc9\xc9\x89\x87\x7d\x7d\xfa\x15\xfa\xfa\xef\xeb\x59\x59\xb2\xc9\x47\x47\x8e\x0b\xf0\xf0\xfb"
    b"\xec\xad\xad\x41\x67\xd4\xd4\xb3\xfd\xa2\xa2\x5f\xea\xaf\xaf\x45\xbf\x9c\x9c\x23\xf7\xa4\xa4\x53\x96\x72\x72\xe4\x5b\xc0\xc0\x9b"
    b"\xc2\xb7\xb7\x75\x1c\xfd\xfd\xe1\xae\x93\x93\x3d\x6a\x26\x26\x4c\x5a\x36\x36\x6c\x41\x3f\x3f\x7e\x02\xf7\xf7\xf5\x4f\xcc\xcc\x83"
    b"\x5c\x34\x34\x68\xf4\xa5\xa5\x51\x34\xe5\xe5\xd1\x08\xf1\xf1\xf9\x93\x71\x71\xe2\x73\xd8\xd8\xab\x53\x31\x31\x62\x3f\x15\x15\x2a"
    b"\x0c\x04\x04\x08\x52\xc7\xc7\x95\x65\x23\x23\x46\x5e\xc3\xc3\x9d\x28\x18\x18\x30\xa1\x96\x96\x37\x0f\x05\x05\x0a\xb5\x9a\x9a\x2f"
    b"\x09\x07\x07\x0e\x36\x12\x12\x24\x9b\x80\x80\x1b\x3d\xe2\xe2\xdf\x26\xeb\xeb\xcd\x69\x27\x27\x4e\xcd\xb2\xb2\x7f\x9f\x75\x75\xea"
    b"\x1b\x09\x09\x12\x9e\x83\x83\x1d\x74\x2c\x2c\x58\x2e\x1a\x1a\x34\x2d\x1b\x1b\x36\xb2\x6e\x6e\xdc\xee\x5a\x5a\xb4\xfb\xa0\xa0\x5b"
    b"\xf6\x52\x52\xa4\x4d\x3b\x3b\x76\x61\xd6\xd6\xb7\xce\xb3\xb3\x7d\x7b\x29\x29\x52\x3e\xe3\xe3\xdd\x71\x2f\x2f\x5e\x97\x84\x84\x13"
    b"\xf5\x53\x53\xa6\x68\xd1\xd1\xb9\x00\x00\x00\x00\x2c\xed\xed\xc1\x60\x20\x20\x40\x1f\xfc\xfc\xe3\xc8\xb1\xb1\x79\xed\x5b\x5b\xb6"
    b"\xbe\x6a\x6a\xd4\x46\xcb\xcb\x8d\xd9\xbe\xbe\x67\x4b\x39\x39\x72\xde\x4a\x4a\x94\xd4\x4c\x4c\x98\xe8\x58\x58\xb0\x4a\xcf\xcf\x85"
    b"\x6b\xd0\xd0\xbb\x2a\xef\xef\xc5\xe5\xaa\xaa\x4f\x16\xfb\xfb\xed\xc5\x43\x43\x86\xd7\x4d\x4d\x9a\x55\x33\x33\x66\x94\x85\x85\x11"
    b"\xcf\x45\x45\x8a\x10\xf9\xf9\xe9\x06\x02\x02\x04\x81\x7f\x7f\xfe\xf0\x50\x50\xa0\x44\x3c\x3c\x78\xba\x9f\x9f\x25\xe3\xa8\xa8\x4b"
    b"\xf3\x51\x51\xa2\xfe\xa3\xa3\x5d\xc0\x40\x40\x80\x8a\x8f\x8f\x05\xad\x92\x92\x3f\xbc\x9d\x9d\x21\x48\x38\x38\x70\x04\xf5\xf5\xf1"
    b"\xdf\xbc\xbc\x63\xc1\xb6\xb6\x77\x75\xda\xda\xaf\x63\x21\x21\x42\x30\x10\x10\x20\x1a\xff\xff\xe5\x0e\xf3\xf3\xfd\x6d\xd2\xd2\xbf"
    b"\x4c\xcd\xcd\x81\x14\x0c\x0c\x18\x35\x13\x13\x26\x2f\xec\xec\xc3\xe1\x5f\x5f\xbe\xa2\x97\x97\x35\xcc\x44\x44\x88\x39\x17\x17\x2e"
    b"\x57\xc4\xc4\x93\xf2\xa7\xa7\x55\x82\x7e\x7e\xfc\x47\x3d\x3d\x7a\xac\x64\x64\xc8\xe7\x5d\x5d\xba\x2b\x19\x19\x32\x95\x73\x73\xe6"
    b"\xa0\x60\x60\xc0\x98\x81\x81\x19\xd1\x4f\x4f\x9e\x7f\xdc\xdc\xa3\x66\x22\x22\x44\x7e\x2a\x2a\x54\xab\x90\x90\x3b\x83\x88\x88\x0b"
    b"\xca\x46\x46\x8c\x29\xee\xee\xc7\xd3\xb8\xb8\x6b\x3c\x14\x14\x28\x79\xde\xde\xa7\xe2\x5e\x5e\xbc\x1d\x0b\x0b\x16\x76\xdb\xdb\xad"
    b"\x3b\xe0\xe0\xdb\x56\x32\x32\x64\x4e\x3a\x3a\x74\x1e\x0a\x0a\x14\xdb\x49\x49\x92\x0a\x06\x06\x0c\x6c\x24\x24\x48\xe4\x5c\x5c\xb8"
    b"\x5d\xc2\xc2\x9f\x6e\xd3\xd3\xbd\xef\xac\xac\x43\xa6\x62\x62\xc4\xa8\x91\x91\x39\xa4\x95\x95\x31\x37\xe4\xe4\xd3\x8b\x79\x79\xf2"
    b"\x32\xe7\xe7\xd5\x43\xc8\xc8\x8b\x59\x37\x37\x6e\xb7\x6d\x6d\xda\x8c\x8d\x8d\x01\x64\xd5\xd5\xb1\xd2\x4e\x4e\x9c\xe0\xa9\xa9\x49"
    b"\xb4\x6c\x6c\xd8\xfa\x56\x56\xac\x07\xf4\xf4\xf3\x25\xea\xea\xcf\xaf\x65\x65\xca\x8e\x7a\x7a\xf4\xe9\xae\xae\x47\x18\x08\x08\x10"
    b"\xd5\xba\xba\x6f\x88\x78\x78\xf0\x6f\x25\x25\x4a\x72\x2e\x2e\x5c\x24\x1c\x1c\x38\xf1\xa6\xa6\x57\xc7\xb4\xb4\x73\x51\xc6\xc6\x97"
    b"\x23\xe8\xe8\xcb\x7c\xdd\xdd\xa1\x9c\x74\x74\xe8\x21\x1f\x1f\x3e\xdd\x4b\x4b\x96\xdc\xbd\xbd\x61\x86\x8b\x8b\x0d\x85\x8a\x8a\x0f"
    b"\x90\x70\x70\xe0\x42\x3e\x3e\x7c\xc4\xb5\xb5\x71\xaa\x66\x66\xcc\xd8\x48\x48\x90\x05\x03\x03\x06\x01\xf6\xf6\xf7\x12\x0e\x0e\x1c"
    b"\xa3\x61\x61\xc2\x5f\x35\x35\x6a\xf9\x57\x57\xae\xd0\xb9\xb9\x69\x91\x86\x86\x17\x58\xc1\xc1\x99\x27\x1d\x1d\x3a\xb9\x9e\x9e\x27"
    b"\x38\xe1\xe1\xd9\x13\xf8\xf8\xeb\xb3\x98\x98\x2b\x33\x11\x11\x22\xbb\x69\x69\xd2\x70\xd9\xd9\xa9\x89\x8e\x8e\x07\xa7\x94\x94\x33"
    b"\xb6\x9b\x9b\x2d\x22\x1e\x1e\x3c\x92\x87\x87\x15\x20\xe9\xe9\xc9\x49\xce\xce\x87\xff\x55\x55\xaa\x78\x28\x28\x50\x7a\xdf\xdf\xa5"
    b"\x8f\x8c\x8c\x03\xf8\xa1\xa1\x59\x80\x89\x89\x09\x17\x0d\x0d\x1a\xda\xbf\xbf\x65\x31\xe6\xe6\xd7\xc6\x42\x42\x84\xb8\x68\x68\xd0"
    b"\xc3\x41\x41\x82\xb0\x99\x99\x29\x77\x2d\x2d\x5a\x11\x0f\x0f\x1e\xcb\xb0\xb0\x7b\xfc\x54\x54\xa8\xd6\xbb\xbb\x6d\x3a\x16\x16\x2c"
)


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


def _make_te(sb):
    """The round table from the S-box ``sb``: for each byte x, the column
    (2s, s, s, 3s) of s = S(x)."""
    te = array("I", bytes(1024))
    for x in range(256):
        v = sb[x]
        v2 = ((v << 1) ^ (0x1B if v & 0x80 else 0)) & 0xFF
        te[x] = (v2 << 24) | (v << 16) | (v << 8) | (v2 ^ v)
    return te


# The viper code reads the round table through a ptr32: a frozen bytes
# constant is not word-aligned (the QEMU target's are not), which x86, x64
# and ARMv7-M/EM (sys.implementation._mpy >> 10) load all the same; any
# other CPU gets the table computed from the definition into an array (1 KB
# of heap, as before).  (_make_sbox, _make_te: also what the tests check the
# constants against.)
if (getattr(sys.implementation, "_mpy", 0) >> 10) not in (1, 2, 5, 6, 7, 8):
    _te = _make_te(_make_sbox())


class AES128:
    """One key, forward direction.  ``pure=True`` forces the viper code even
    where cryptolib exists (tests and the target measurement)."""

    def __init__(self, key, pure=False):
        if len(key) != 16:
            raise ValueError("AES-128 key is 16 bytes")
        self._ecb = None
        if cryptolib is not None and not pure:
            self._ecb = cryptolib.aes(bytes(key), 1)
            return
        sb = _sbox
        rk = bytearray(176)
        rk[0:16] = key
        rcon = 1
        for i in range(16, 176, 4):
            a, b, c, d = rk[i - 4], rk[i - 3], rk[i - 2], rk[i - 1]
            if i % 16 == 0:
                a, b, c, d = sb[b] ^ rcon, sb[c], sb[d], sb[a]
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
