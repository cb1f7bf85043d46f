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
from array import array

IV = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
      0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)

# First 32 bits of the fractional parts of the cube roots of the first 64 primes.
_K = array("I", (
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2))


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
