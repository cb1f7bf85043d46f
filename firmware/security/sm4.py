"""SM4 block cipher (GB/T 32907-2016), written from the standard, for the
platform link (issue 13, C-2).

``SM4(key)`` expands the 16-byte key once into 32 round keys; ``encrypt_into
(src, dst)`` enciphers one 16-byte block without allocating.  CTR mode only
needs the forward direction (security/linkrec.py), so decryption is not built.
The round function is viper with 32-bit masks so that 64-bit ports (unix)
and 32-bit boards give the same words.  Checked against the standard's
example, its 1,000,000-iteration example and gmssl on the host
(tests/mp/test_security_link.py, tests/test_security_host.py)."""
import micropython
from array import array

# The S-box of GB/T 32907-2016, section 6.2 (one bytes literal: ROM on a frozen build).
_SBOX = (
    b"\xd6\x90\xe9\xfe\xcc\xe1\x3d\xb7\x16\xb6\x14\xc2\x28\xfb\x2c\x05\x2b\x67\x9a\x76\x2a\xbe\x04\xc3\xaa\x44\x13\x26\x49\x86\x06\x99"
    b"\x9c\x42\x50\xf4\x91\xef\x98\x7a\x33\x54\x0b\x43\xed\xcf\xac\x62\xe4\xb3\x1c\xa9\xc9\x08\xe8\x95\x80\xdf\x94\xfa\x75\x8f\x3f\xa6"
    b"\x47\x07\xa7\xfc\xf3\x73\x17\xba\x83\x59\x3c\x19\xe6\x85\x4f\xa8\x68\x6b\x81\xb2\x71\x64\xda\x8b\xf8\xeb\x0f\x4b\x70\x56\x9d\x35"
    b"\x1e\x24\x0e\x5e\x63\x58\xd1\xa2\x25\x22\x7c\x3b\x01\x21\x78\x87\xd4\x00\x46\x57\x9f\xd3\x27\x52\x4c\x36\x02\xe7\xa0\xc4\xc8\x9e"
    b"\xea\xbf\x8a\xd2\x40\xc7\x38\xb5\xa3\xf7\xf2\xce\xf9\x61\x15\xa1\xe0\xae\x5d\xa4\x9b\x34\x1a\x55\xad\x93\x32\x30\xf5\x8c\xb1\xe3"
    b"\x1d\xf6\xe2\x2e\x82\x66\xca\x60\xc0\x29\x23\xab\x0d\x53\x4e\x6f\xd5\xdb\x37\x45\xde\xfd\x8e\x2f\x03\xff\x6a\x72\x6d\x6c\x5b\x51"
    b"\x8d\x1b\xaf\x92\xbb\xdd\xbc\x7f\x11\xd9\x5c\x41\x1f\x10\x5a\xd8\x0a\xc1\x31\x88\xa5\xcd\x7b\xbd\x2d\x74\xd0\x12\xb8\xe5\xb4\xb0"
    b"\x89\x69\x97\x4a\x0c\x96\x77\x7e\x65\xb9\xf1\x09\xc5\x6e\xc6\x84\x18\xf0\x7d\xec\x3a\xdc\x4d\x20\x79\xee\x5f\x3e\xd7\xcb\x39\x48"
)

_FK = (0xA3B1BAC6, 0x56AA3350, 0x677D9197, 0xB27022DC)


@micropython.viper
def _t(x: uint, sb: ptr8, key_schedule: int) -> uint:
    """T (rounds) or T' (key schedule): S-box on each byte, then L or L'."""
    M = uint(0xFFFFFFFF)
    b = (uint(sb[(x >> 24) & 0xFF]) << 24) | (uint(sb[(x >> 16) & 0xFF]) << 16) | \
        (uint(sb[(x >> 8) & 0xFF]) << 8) | uint(sb[x & 0xFF])
    if key_schedule:
        return (b ^ (((b << 13) | (b >> 19)) & M) ^ (((b << 23) | (b >> 9)) & M)) & M
    return (b ^ (((b << 2) | (b >> 30)) & M) ^ (((b << 10) | (b >> 22)) & M) ^
            (((b << 18) | (b >> 14)) & M) ^ (((b << 24) | (b >> 8)) & M)) & M


@micropython.viper
def _block(rk: ptr32, sb: ptr8, src: ptr8, dst: ptr8):
    M = uint(0xFFFFFFFF)
    x0 = (uint(src[0]) << 24) | (uint(src[1]) << 16) | (uint(src[2]) << 8) | uint(src[3])
    x1 = (uint(src[4]) << 24) | (uint(src[5]) << 16) | (uint(src[6]) << 8) | uint(src[7])
    x2 = (uint(src[8]) << 24) | (uint(src[9]) << 16) | (uint(src[10]) << 8) | uint(src[11])
    x3 = (uint(src[12]) << 24) | (uint(src[13]) << 16) | (uint(src[14]) << 8) | uint(src[15])
    i = 0
    while i < 32:
        x = (x1 ^ x2 ^ x3 ^ uint(rk[i])) & M
        b = (uint(sb[(x >> 24) & 0xFF]) << 24) | (uint(sb[(x >> 16) & 0xFF]) << 16) | \
            (uint(sb[(x >> 8) & 0xFF]) << 8) | uint(sb[x & 0xFF])
        n = x0 ^ b ^ (((b << 2) | (b >> 30)) & M) ^ (((b << 10) | (b >> 22)) & M) ^ \
            (((b << 18) | (b >> 14)) & M) ^ (((b << 24) | (b >> 8)) & M)
        x0 = x1
        x1 = x2
        x2 = x3
        x3 = n & M
        i += 1
    # The output is the last four words in reverse order (R transform).
    dst[0] = x3 >> 24
    dst[1] = x3 >> 16
    dst[2] = x3 >> 8
    dst[3] = x3
    dst[4] = x2 >> 24
    dst[5] = x2 >> 16
    dst[6] = x2 >> 8
    dst[7] = x2
    dst[8] = x1 >> 24
    dst[9] = x1 >> 16
    dst[10] = x1 >> 8
    dst[11] = x1
    dst[12] = x0 >> 24
    dst[13] = x0 >> 16
    dst[14] = x0 >> 8
    dst[15] = x0


class SM4:
    """One key, forward direction (what CTR needs)."""

    def __init__(self, key):
        if len(key) != 16:
            raise ValueError("SM4 key is 16 bytes")
        self._rk = array("I", bytes(128))
        k = [((key[4 * i] << 24) | (key[4 * i + 1] << 16) | (key[4 * i + 2] << 8)
              | key[4 * i + 3]) ^ _FK[i] for i in range(4)]
        for i in range(32):
            ck = 0
            for j in range(4):
                ck = (ck << 8) | (((4 * i + j) * 7) & 0xFF)
            nk = k[i] ^ _t(k[i + 1] ^ k[i + 2] ^ k[i + 3] ^ ck, _SBOX, 1)
            k.append(nk)
            self._rk[i] = nk

    def encrypt_into(self, src, dst):
        """Encipher the 16-byte block ``src`` into ``dst`` (may be the same buffer)."""
        _block(self._rk, _SBOX, src, dst)

    def encrypt(self, block):
        out = bytearray(16)
        _block(self._rk, _SBOX, block, out)
        return bytes(out)
