"""SM2 signature verification (GB/T 32918.2-2016), written from the standard.

``verify(pub, msg, sig, uid=b"1234567812345678") -> bool``: ``pub`` the
64-byte public key x||y, ``sig`` the 64-byte r||s, the message hashed as
the standard's SM3withSM2: e = SM3(Z_A || msg), Z_A = SM3(ENTL || ID || a
|| b || xG || yG || xA || yA).  Big-integer arithmetic of the port (mpz):
Jacobian coordinates with a = -3, s*G + t*P in one pass (Shamir's trick).
Not on a control path: an update bundle or a platform handshake calls it
once; its cost on the target is in docs/security.md.  Signing stays on the
host (host_tools/secsign.py, gmssl).
"""
from security.sm3 import SM3

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0


def _int(b):
    return int.from_bytes(b, "big")


def _b32(v):
    return v.to_bytes(32, "big")


def _dbl(X, Y, Z):
    if not Y or not Z:
        return 0, 1, 0
    p = P
    d = Z * Z % p
    g = Y * Y % p
    be = X * g % p
    al = 3 * (X - d) * (X + d) % p
    X3 = (al * al - 8 * be) % p
    Z3 = ((Y + Z) * (Y + Z) - g - d) % p
    Y3 = (al * (4 * be - X3) - 8 * g * g) % p
    return X3, Y3, Z3


def _add(X1, Y1, Z1, x2, y2):
    """Jacobian + affine."""
    p = P
    if not Z1:
        return x2, y2, 1
    zz = Z1 * Z1 % p
    H = (x2 * zz - X1) % p
    r = (y2 * Z1 * zz - Y1) % p
    if not H:
        if not r:
            return _dbl(X1, Y1, Z1)
        return 0, 1, 0
    HH = H * H % p
    HHH = H * HH % p
    V = X1 * HH % p
    X3 = (r * r - HHH - 2 * V) % p
    Y3 = (r * (V - X3) - Y1 * HHH) % p
    return X3, Y3, Z1 * H % p


def _affine(X, Y, Z):
    if not Z:
        return None
    zi = pow(Z, P - 2, P)
    z2 = zi * zi % P
    return X * z2 % P, Y * z2 * zi % P


def on_curve(x, y):
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def za(pub, uid=b"1234567812345678"):
    h = SM3()
    n = len(uid) * 8
    h.update(bytes((n >> 8, n & 0xFF)))
    h.update(uid)
    for v in (A, B, GX, GY):
        h.update(_b32(v))
    h.update(pub)
    return h.digest()


def verify(pub, msg, sig, uid=b"1234567812345678"):
    """True if ``sig`` (r||s, 64 bytes) is ``pub``'s SM2 signature of ``msg``."""
    if len(pub) != 64 or len(sig) != 64:
        return False
    px = _int(pub[:32])
    py = _int(pub[32:])
    if not on_curve(px, py):
        return False
    r = _int(sig[:32])
    s = _int(sig[32:])
    if not (1 <= r < N and 1 <= s < N):
        return False
    t = (r + s) % N
    if not t:
        return False
    h = SM3(za(pub, uid))
    h.update(msg)
    e = _int(h.digest())
    # s*G + t*P, bit by bit from the top, with G+P precomputed
    gp = _affine(*_add(GX, GY, 1, px, py))
    X, Y, Z = 0, 1, 0
    i = 256
    while i > 0:
        i -= 1
        X, Y, Z = _dbl(X, Y, Z)
        bs = (s >> i) & 1
        bt = (t >> i) & 1
        if bs and bt:
            if gp is None:
                continue
            X, Y, Z = _add(X, Y, Z, gp[0], gp[1])
        elif bs:
            X, Y, Z = _add(X, Y, Z, GX, GY)
        elif bt:
            X, Y, Z = _add(X, Y, Z, px, py)
    q = _affine(X, Y, Z)
    if q is None:
        return False
    return (e + q[0]) % N == r
