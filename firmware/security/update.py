"""Signed firmware update with A/B slots and rollback (issue 13, C-3).

Bundle (one file, built and signed on the host: ``make sign``,
host_tools/update_bundle.py)::

    "EVU1" | u32 BE manifest length | manifest | 64-byte SM2 signature | files

The signature (SM3withSM2, firmware/security/sm2.py) covers ``"EVU1"``,
the length and the manifest; the manifest (a flat JSON object read by
``config.parse``) lists ``version``, ``count`` and per file ``fileN``
(name), ``sizeN`` and ``sm3N`` (hex), in the order of the files.  So a
forged manifest fails the signature and a tampered file fails its hash.
The public key is ``update_pub`` in the key file (keys.json), which the
console below maintainer cannot read or write.

Slots: ``<root>/slot_a`` and ``<root>/slot_b`` hold .mpy sets; the state
file ``<root>/slots.json`` says which one is ``active`` (confirmed), which
one is ``pending`` (installed, not yet confirmed), the ``version`` of each
and the boot ``tries`` of the pending one.  ``install`` writes the files
into the inactive slot and only then marks it pending (a power cut before
leaves the old state).  At boot ``select`` returns the slot to run: the
pending one for ``MAX_TRIES`` (one) trial boot; a trial that never
confirmed (a reset or power cut during the trial) is rolled back at the
next boot, and ``fail`` (the boot module, firmware/bootseq.py, when the app
raised before it reported healthy) rolls back at once.  ``confirm`` (the
app, once it has run healthy) makes the pending slot active.  A slot whose
directory is gone or empty is not run: the image's own (frozen) firmware is
the factory fallback.  A bundle whose version is not above the installed one
is refused (no downgrade or replay of an old signed bundle).
"""
import os
from micropython import const

MAGIC = b"EVU1"
MAX_TRIES = const(1)
_MAX_MANIFEST = const(4096)
_MAX_FILES = const(64)
_CHUNK = const(512)


class UpdateError(Exception):
    pass


def _u32(b):
    return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]


def parse_header(head):
    """``head``: the first bytes of a bundle -> manifest length; raises
    UpdateError.  (Fuzzed on the host.)"""
    if len(head) < 8 or head[:4] != MAGIC:
        raise UpdateError("not an update bundle")
    n = _u32(head[4:8])
    if not 2 <= n <= _MAX_MANIFEST:
        raise UpdateError("manifest length %d" % n)
    return n


def parse_manifest(text):
    """Manifest bytes -> (version, [(name, size, sm3 bytes)]); UpdateError."""
    import config
    from binascii import unhexlify
    try:
        m = config.parse(text)
    except Exception as e:
        raise UpdateError("manifest: %s" % e)
    if not isinstance(m, dict):
        raise UpdateError("manifest: not an object")
    ver = m.get("version")
    cnt = m.get("count")
    if not isinstance(ver, int) or isinstance(ver, bool) or ver < 1:
        raise UpdateError("manifest: bad version")
    if not isinstance(cnt, int) or isinstance(cnt, bool) or not 1 <= cnt <= _MAX_FILES:
        raise UpdateError("manifest: bad count")
    files = []
    for i in range(cnt):
        name = m.get("file%d" % i)
        size = m.get("size%d" % i)
        h = m.get("sm3%d" % i)
        if not isinstance(name, str) or not _plain(name):
            raise UpdateError("manifest: bad file name %d" % i)
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 1 << 22:
            raise UpdateError("manifest: bad size %d" % i)
        try:
            d = unhexlify(h) if isinstance(h, str) else b""
        except Exception:
            d = b""
        if len(d) != 32:
            raise UpdateError("manifest: bad hash %d" % i)
        files.append((name, size, d))
    return ver, files


def _plain(n):
    """A relative path of plain names (one package level at most)."""
    parts = n.split("/")
    if len(parts) > 2:
        return False
    for p in parts:
        if not 0 < len(p) <= 40 or p[0] == ".":
            return False
        for c in p:
            if not (c.isalpha() or c.isdigit() or c in "._-"):
                return False
    return True


def verify(path, pub):
    """Check the bundle at ``path`` against ``pub`` (64 bytes); returns
    (version, files); raises UpdateError with the reason."""
    from security.sm2 import verify as sm2_verify
    from security.sm3 import SM3
    if pub is None or len(pub) != 64:
        raise UpdateError("no update key provisioned (keys.json update_pub)")
    with open(path, "rb") as f:
        head = f.read(8)
        n = parse_header(head)
        man = f.read(n)
        sig = f.read(64)
        if len(man) != n or len(sig) != 64:
            raise UpdateError("truncated bundle")
        if not sm2_verify(pub, head + man, sig):
            raise UpdateError("signature does not verify")
        ver, files = parse_manifest(man)
        buf = bytearray(_CHUNK)
        for name, size, want in files:
            h = SM3()
            left = size
            while left:
                k = f.readinto(memoryview(buf)[:min(left, _CHUNK)])
                if not k:
                    raise UpdateError("truncated file %s" % name)
                h.update(memoryview(buf)[:k])
                left -= k
            if h.digest() != want:
                raise UpdateError("file %s does not match its hash" % name)
        if f.read(1):
            raise UpdateError("data after the last file")
    return ver, files


def load_pub(key_path="keys.json"):
    """``update_pub`` of the key file as 64 bytes, or None (not provisioned)."""
    import config
    from binascii import unhexlify
    try:
        with open(key_path, "rb") as f:
            d = config.parse(f.read(4096))
        return unhexlify(d["update_pub"])
    except Exception:
        return None


# ---- slots -----------------------------------------------------------------
def state(root):
    import config
    try:
        with open(root + "/slots.json", "rb") as f:
            d = config.parse(f.read(1024))
        if isinstance(d, dict) and d.get("active") in ("a", "b"):
            return d
    except Exception:
        pass
    return {"active": "a", "pending": "", "version": 0, "pversion": 0, "tries": 0}


def _save(root, d):
    import json
    tmp = root + "/slots.json.new"
    with open(tmp, "w") as f:
        f.write(json.dumps(d))
    try:
        os.rename(tmp, root + "/slots.json")
    except OSError:
        with open(root + "/slots.json", "w") as f:
            f.write(json.dumps(d))


def _mkdir(p):
    try:
        os.mkdir(p)
    except OSError:
        pass


def _clear(d):
    for fn in os.listdir(d):
        p = d + "/" + fn
        try:
            os.remove(p)
        except OSError:
            _clear(p)
            os.rmdir(p)


def install(path, pub, root, log=None):
    """Verify, then copy the files into the inactive slot and mark it
    pending.  Returns the version; raises UpdateError (nothing changed)."""
    st = state(root)
    ver, files = verify(path, pub)
    cur = max(st.get("version", 0), st.get("pversion", 0) if st.get("pending") else 0)
    if ver <= cur:
        raise UpdateError("version %d not above the installed %d (downgrade/replay)" % (ver, cur))
    slot = "b" if st["active"] == "a" else "a"
    d = root + "/slot_" + slot
    _mkdir(d)
    _clear(d)
    with open(path, "rb") as f:
        n = parse_header(f.read(8))
        f.seek(8 + n + 64)
        buf = bytearray(_CHUNK)
        for name, size, _h in files:
            if "/" in name:
                _mkdir(d + "/" + name.split("/")[0])
            with open(d + "/" + name, "wb") as g:
                left = size
                while left:
                    k = f.readinto(memoryview(buf)[:min(left, _CHUNK)])
                    g.write(memoryview(buf)[:k])
                    left -= k
    st["pending"] = slot
    st["pversion"] = ver
    st["tries"] = 0
    _save(root, st)
    if log:
        log(1, ver)
    return ver


LAST_ROLLBACK = 0     # the version ``select`` rolled back at this boot (0: none)


def select(root):
    """At boot: the slot directory to run ("" = the image's own modules
    when no slot was ever installed) and whether it is a trial."""
    st = state(root)
    p = st.get("pending")
    if p:
        if st.get("tries", 0) < MAX_TRIES:
            st["tries"] = st.get("tries", 0) + 1
            _save(root, st)
            d = root + "/slot_" + p
            if _has_files(d):
                return d, True
        # the pending firmware never confirmed: roll back
        global LAST_ROLLBACK
        LAST_ROLLBACK = st.get("pversion", 0)
        st["pending"] = ""
        st["tries"] = 0
        st["rolled_back"] = st.get("pversion", 0)
        _save(root, st)
    if st.get("version", 0):
        d = root + "/slot_" + st["active"]
        if _has_files(d):
            return d, False
    return "", False


def _has_files(d):
    try:
        return len(os.listdir(d)) > 0
    except OSError:
        return False


def fail(root):
    """The trial firmware failed before it reported healthy: drop it now,
    so the next boot runs the previous slot.  False when nothing was on trial."""
    st = state(root)
    if not st.get("pending"):
        return False
    st["rolled_back"] = st.get("pversion", 0)
    st["pending"] = ""
    st["tries"] = 0
    _save(root, st)
    return True


def confirm(root):
    """The running (pending) firmware is healthy: make it the active slot."""
    st = state(root)
    if st.get("pending"):
        st["active"] = st["pending"]
        st["version"] = st.get("pversion", 0)
        st["pending"] = ""
        st["tries"] = 0
        _save(root, st)
        return True
    return False
