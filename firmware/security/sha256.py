"""SHA-256 compression function (FIPS 180-4), written from the standard, for
the stepped HMAC of the aes platform suite (issue 13, C-2).

The port's ``hashlib.sha256`` (security/hmac256.py) stays what the console,
the update check and the handshake use.  The record layer cannot: a
``hashlib`` object can be neither copied nor resumed from a chaining value,
so an HMAC on it allocates two hash objects and two digests per record and
runs in one call.  Here the compression is viper over caller-owned words
(no heap), so security/linkrec.py keeps the HMAC's keyed inner and outer
chaining values from link-up and compresses one 64-byte block per unit of
work, in place in the frame.  32-bit masks: the same words on 64-bit ports
(unix) and 32-bit boards.  Checked against ``hashlib`` (tests/mp/
test_security_link.py) and CPython's ``hmac`` (tests/test_security_host.py)."""
import micropython
import sys
from array import array

IV = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
      0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)

# First 32 bits of the fractional parts of the cube roots of the first 64
# primes (FIPS 180-4 4.2.2: 0x428A2F98, 0x71374491, ...), little-endian words.
_K = (
    b"\x98\x2f\x8a\x42\x91\x44\x37\x71\xcf\xfb\xc0\xb5\xa5\xdb\xb5\xe9\x5b\xc2\x56\x39\xf1\x11\xf1\x59\xa4\x82\x3f\x92\xd5\x5e\x1c\xab"
    b"\x98\xaa\x07\xd8\x01\x5b\x83\x12\xbe\x85\x31\x24\xc3\x7d\x0c\x55\x74\x5d\xbe\x72\xfe\xb1\xde\x80\xa7\x06\xdc\x9b\x74\xf1\x9b\xc1"
    b"\xc1\x69\x9b\xe4\x86\x47\xbe\xef\xc6\x9d\xc1\x0f\xcc\xa1\x0c\x24\x6f\x2c\xe9\x2d\xaa\x84\x74\x4a\xdc\xa9\xb0\x5c\xda\x88\xf9\x76"
    b"\x52\x51\x3e\x98\x6d\xc6\x31\xa8\xc8\x27\x03\xb0\xc7\x7f\x59\xbf\xf3\x0b\xe0\xc6\x47\x91\xa7\xd5\x51\x63\xca\x06\x67\x29\x29\x14"
    b"\x85\x0a\xb7\x27\x38\x21\x1b\x2e\xfc\x6d\x2c\x4d\x13\x0d\x38\x53\x54\x73\x0a\x65\xbb\x0a\x6a\x76\x2e\xc9\xc2\x81\x85\x2c\x72\x92"
    b"\xa1\xe8\xbf\xa2\x4b\x66\x1a\xa8\x70\x8b\x4b\xc2\xa3\x51\x6c\xc7\x19\xe8\x92\xd1\x24\x06\x99\xd6\x85\x35\x0e\xf4\x70\xa0\x6a\x10"
    b"\x16\xc1\xa4\x19\x08\x6c\x37\x1e\x4c\x77\x48\x27\xb5\xbc\xb0\x34\xb3\x0c\x1c\x39\x4a\xaa\xd8\x4e\x4f\xca\x9c\x5b\xf3\x6f\x2e\x68"
    b"\xee\x82\x8f\x74\x6f\x63\xa5\x78\x14\x78\xc8\x84\x08\x02\xc7\x8c\xfa\xff\xbe\x90\xeb\x6c\x50\xa4\xf7\xa3\xf9\xbe\xf2\x78\x71\xc6"
)
# Read through a viper ptr32 (see security/aes128.py ``_te``: in flash where
# the CPU loads unaligned words, else copied into an array).
if (getattr(sys.implementation, "_mpy", 0) >> 10) not in (1, 2, 5, 6, 7, 8):
    _K = array("I", _K)


@micropython.viper
def _comp(v: ptr32, blk: ptr8, off: int, w: ptr32, kk: ptr32):
    M = uint(0xFFFFFFFF)
    j = 0
    while j < 16:
        k = off + 4 * j
        w[j] = (uint(blk[k]) << 24) | (uint(blk[k + 1]) << 16) | \
            (uint(blk[k + 2]) << 8) | uint(blk[k + 3])
        j += 1
    while j < 64:
        x = uint(w[j - 15])
        s0 = (((x >> 7) | (x << 25)) ^ ((x >> 18) | (x << 14)) ^ (x >> 3)) & M
        x = uint(w[j - 2])
        s1 = (((x >> 17) | (x << 15)) ^ ((x >> 19) | (x << 13)) ^ (x >> 10)) & M
        w[j] = (uint(w[j - 16]) + s0 + uint(w[j - 7]) + s1) & M
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
        s1 = (((e >> 6) | (e << 26)) ^ ((e >> 11) | (e << 21)) ^ ((e >> 25) | (e << 7))) & M
        ch = (e & f) ^ ((e ^ M) & g)
        t1 = (h + s1 + ch + uint(kk[j]) + uint(w[j])) & M
        s0 = (((a >> 2) | (a << 30)) ^ ((a >> 13) | (a << 19)) ^ ((a >> 22) | (a << 10))) & M
        t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) & M
        h = g
        g = f
        f = e
        e = (d + t1) & M
        d = c
        c = b
        b = a
        a = (t1 + t2) & M
        j += 1
    v[0] = (uint(v[0]) + a) & M
    v[1] = (uint(v[1]) + b) & M
    v[2] = (uint(v[2]) + c) & M
    v[3] = (uint(v[3]) + d) & M
    v[4] = (uint(v[4]) + e) & M
    v[5] = (uint(v[5]) + f) & M
    v[6] = (uint(v[6]) + g) & M
    v[7] = (uint(v[7]) + h) & M


def _compress(v, blk, off, w):
    """One 64-byte block ``blk[off:off + 64]`` into the chaining value ``v``
    (8 words); ``w``: at least 64 words of scratch (the same call as
    ``security.sm3._compress``)."""
    _comp(v, blk, off, w, _K)
