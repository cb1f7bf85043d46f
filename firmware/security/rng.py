"""Random bytes for nonces and session keys.

``os.urandom`` where the port has it (the unix port; STM32 and ESP32 builds
read their hardware RNG through it).  A port without it (the qemu target)
gets a SHA-256 hash chain seeded from everything that varies between boots
and calls (``ticks_us``, the RTC, ``random.getrandbits``, the event log's
boot counter given by the app via ``stir``) -- unique per call, which is
what a challenge needs against replay, but not unpredictable to someone
who knows the board's state: docs/security.md lists it."""
import hashlib

_state = [None]
_ctr = [0]


def stir(data):
    """Mix ``data`` (bytes) into the fallback generator's state."""
    h = hashlib.sha256(_state[0] or b"evc-rng")
    h.update(data)
    _state[0] = h.digest()


def random_bytes(n):
    try:
        import os
        return os.urandom(n)
    except (ImportError, AttributeError):
        pass
    import time
    try:
        import random
        r = random.getrandbits(32)
    except Exception:
        r = 0
    _ctr[0] += 1
    out = b""
    while len(out) < n:
        _ctr[0] += 1
        h = hashlib.sha256(_state[0] or b"evc-rng")
        t = time.time() if hasattr(time, "time") else 0     # (no RTC on the qemu port)
        h.update(b"%d %d %d %d" % (_ctr[0], time.ticks_us(), r, t))
        d = h.digest()
        _state[0] = hashlib.sha256(d + b"next").digest()
        out += d
    return out[:n]
