"""SM2 operations cut into small steps for the platform handshake (issue 13,
C-2): the charger's ephemeral key, ECDH, SM3withSM2 signing and verifying.

A scalar multiplication costs ~0.5 s on a 168 MHz F405, far above a
scheduler pass (1 ms, docs/performance.md).  Each operation here is a
generator that yields after each product of 256-bit numbers and its
reduction (one product a step), so that the caller -- the link task in a
low-priority slot -- runs one step per pass.  ``Op(gen)`` drives one:
``step()`` returns True when done, the value is in ``result``.  The arithmetic is the same as
security/sm2.py (Jacobian, a = -3) and is checked against gmssl on the host.
"""
from security import sm2
from security.sm3 import SM3

P = sm2.P
N = sm2.N
G = (sm2.GX, sm2.GY)


class Op:
    """One stepped operation; ``steps`` counts the passes it took."""

    def __init__(self, gen):
        self._g = gen
        self.result = None
        self.done = False
        self.steps = 0

    def step(self):
        if self.done:
            return True
        self.steps += 1
        try:
            next(self._g)
        except StopIteration as e:
            self.result = e.value
            self.done = True
        return self.done

    def run(self):
        """All steps at once (host tests, benchmarks)."""
        while not self.step():
            pass
        return self.result


def _powmod(x, e, m):
    """x**e mod m, one product a step (Fermat inversions)."""
    r = 1
    i = 256                     # every exponent here is below 2**256
    while i > 0:
        i -= 1
        r = r * r % m
        yield
        if (e >> i) & 1:
            r = r * x % m
            yield
    return r


def _affine(X, Y, Z):
    if not Z:
        return None
    zi = yield from _powmod(Z, P - 2, P)
    z2 = zi * zi % P
    yield
    x = X * z2 % P
    yield
    y = Y * z2 % P
    yield
    return x, y * zi % P


def _dbl(X, Y, Z):
    if not Y or not Z:
        return 0, 1, 0
    p = P
    d = Z * Z % p
    yield
    g = Y * Y % p
    yield
    be = X * g % p
    yield
    al = 3 * (X - d) * (X + d) % p
    yield
    X3 = (al * al - 8 * be) % p
    yield
    Z3 = ((Y + Z) * (Y + Z) - g - d) % p
    yield
    gg = 8 * g * g % p
    yield
    Y3 = (al * (4 * be - X3) - gg) % p
    yield
    return X3, Y3, Z3


def _add(X1, Y1, Z1, x2, y2):
    p = P
    if not Z1:
        return x2, y2, 1
    zz = Z1 * Z1 % p
    yield
    H = (x2 * zz - X1) % p
    yield
    r = y2 * Z1 % p
    yield
    r = (r * zz - Y1) % p
    yield
    if not H:
        if not r:
            return (yield from _dbl(X1, Y1, Z1))
        return 0, 1, 0
    HH = H * H % p
    yield
    HHH = H * HH % p
    yield
    V = X1 * HH % p
    yield
    X3 = (r * r - HHH - 2 * V) % p
    yield
    Y3 = r * (V - X3) % p
    yield
    Y3 = (Y3 - Y1 * HHH) % p
    yield
    return X3, Y3, Z1 * H % p


def _mul2(s, a, t, b):
    """Affine s*a + t*b (b may be None: s*a), Shamir's trick."""
    ab = None
    if b is not None:
        X, Y, Z = yield from _add(a[0], a[1], 1, b[0], b[1])
        ab = yield from _affine(X, Y, Z)
    X, Y, Z = 0, 1, 0
    i = 256
    while i > 0:
        i -= 1
        X, Y, Z = yield from _dbl(X, Y, Z)
        bs = (s >> i) & 1
        bt = (t >> i) & 1 if b is not None else 0
        if bs and bt:
            if ab is not None:
                X, Y, Z = yield from _add(X, Y, Z, ab[0], ab[1])
        elif bs:
            X, Y, Z = yield from _add(X, Y, Z, a[0], a[1])
        elif bt:
            X, Y, Z = yield from _add(X, Y, Z, b[0], b[1])
    return (yield from _affine(X, Y, Z))


def mul(k, point):
    """Stepped k*point (affine, or None for the point at infinity)."""
    return (yield from _mul2(k, point, 0, None))


def b32(v):
    return v.to_bytes(32, "big")


def i32(b):
    return int.from_bytes(b, "big")


def point_bytes(pt):
    return b32(pt[0]) + b32(pt[1])


def point_of(b):
    """The affine point of 64 bytes x||y, or None when it is not on the curve."""
    if len(b) != 64:
        return None
    x, y = i32(b[:32]), i32(b[32:])
    return (x, y) if sm2.on_curve(x, y) else None


def digest(pub, msg, uid=b"1234567812345678"):
    """e = SM3(Z_A || msg) of SM3withSM2 (one short call: 2 SM3)."""
    h = SM3(sm2.za(pub, uid))
    h.update(msg)
    return i32(h.digest())


def sign(d, e, k):
    """Stepped SM2 signature r||s of digest ``e`` with private key ``d`` and
    the random ``k`` (1 <= k < N); None when this k must be redrawn."""
    q = yield from mul(k, G)
    r = (e + q[0]) % N
    if not r or r + k == N:
        return None
    inv = yield from _powmod((1 + d) % N, N - 2, N)
    s = inv * (k - r * d) % N
    if not s:
        return None
    return b32(r) + b32(s)


def verify(pub, e, sig):
    """Stepped SM2 verification of digest ``e`` (see sm2.verify)."""
    pt = point_of(pub)                  # (the curve check: ~4 products, a step)
    yield
    if pt is None or len(sig) != 64:
        return False
    r, s = i32(sig[:32]), i32(sig[32:])
    if not (1 <= r < N and 1 <= s < N):
        return False
    t = (r + s) % N
    if not t:
        return False
    q = yield from _mul2(s, G, t, pt)
    return q is not None and (e + q[0]) % N == r


def kdf(z, n):
    """The SM2 key derivation function (GB/T 32918.4 5.4.3) over SM3."""
    out = b""
    ct = 1
    while len(out) < n:
        out += SM3(z).update(ct.to_bytes(4, "big")).digest()
        ct += 1
    return out[:n]
