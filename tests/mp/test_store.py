"""store.Store: generations, CRC, corrupt/missing -> defaults + warnings, and
power loss at every write of a save on a littlefs (VfsLfs2) RAM device."""
import mptest
import os
import gc
from store import Store, crc32, HDR_LEN
from doubles import RamBdev

MP = "/sfs"


def mount(bd):
    os.mount(os.VfsLfs2(bd), MP)


def umount():
    try:
        os.umount(MP)
    except Exception:
        pass


def fresh():
    bd = RamBdev()
    os.VfsLfs2.mkfs(bd)
    return bd


OLD = b"OLD-record:" + bytes(range(200))
NEW = b"NEW-record:" + bytes(range(255, 0, -1)) + b"tail"


def path():
    return MP + "/safety.rec"


def test_roundtrip_and_generations():
    umount()
    bd = fresh()
    mount(bd)
    try:
        st = Store(path())
        p, w = st.load()
        mptest.eq(p, None, "nothing yet")
        mptest.true(len(w) == 1 and "no valid record" in w[0], "warning %r" % w)
        mptest.true(st.save(OLD), "save 1")
        mptest.true(st.save(NEW), "save 2")
        mptest.eq(sorted(os.listdir(MP)), ["safety.rec", "safety.rec.old"], "two generations")
        st2 = Store(path())
        p, w = st2.load()
        mptest.eq(p, NEW, "newest")
        mptest.eq(w, [], "no warnings")
        mptest.eq(st2.seq, 2, "seq")
        mptest.eq(os.stat(path())[6], HDR_LEN + len(NEW), "size")
    finally:
        umount()


def _corrupt(name, pos, val=None):
    with open(name, "rb") as f:
        d = bytearray(f.read())
    if val is None:
        d[pos] ^= 0x55
        with open(name, "wb") as f:
            f.write(d)
    else:
        with open(name, "wb") as f:
            f.write(val)


def test_corrupt_newest_falls_back_to_old():
    umount()
    bd = fresh()
    mount(bd)
    try:
        st = Store(path())
        st.save(OLD)
        st.save(NEW)
        _corrupt(path(), HDR_LEN + 20)
        p, w = Store(path()).load()
        mptest.eq(p, OLD, "previous generation")
        mptest.true(any("CRC" in x for x in w), "CRC warning %r" % w)
        mptest.true(any("using" in x for x in w), "fallback warning %r" % w)
    finally:
        umount()


def test_every_kind_of_garbage_gives_defaults_and_warnings():
    umount()
    bd = fresh()
    mount(bd)
    try:
        cases = (b"", b"SRC1", b"\x00" * 16, b"XXXX" + b"\x00" * 40, b"\xff" * 3000,
                 bytes(range(256)))
        for g in cases:
            for n in (path(), path() + ".old", path() + ".tmp"):
                try:
                    os.remove(n)
                except OSError:
                    pass
            with open(path(), "wb") as f:
                f.write(g)
            p, w = Store(path()).load()
            mptest.eq(p, None, "garbage %r" % g[:8])
            mptest.true(len(w) == 2, "two warnings (bad file, defaults) %r" % w)
        # header claims a length that does not match the file
        st = Store(path())
        st.save(OLD)
        _corrupt(path(), 8, None)
        p, w = Store(path()).load()
        mptest.eq(p, None, "bad length")
    finally:
        umount()


def test_oversized_refused_and_old_kept():
    umount()
    bd = fresh()
    mount(bd)
    try:
        st = Store(path(), max_payload=256)
        mptest.true(st.save(OLD), "fits")
        mptest.eq(st.save(b"x" * 257), False, "too big")
        mptest.true(any("max" in x for x in st.warnings), "warned")
        mptest.eq(Store(path(), 256).load()[0], OLD, "old kept")
        # a record written with a bigger limit is rejected by a smaller one
        Store(path(), 1024).save(b"y" * 600)
        p, w = Store(path(), 256).load()
        mptest.eq(p, OLD, "oversized generation skipped, previous used")
    finally:
        umount()


def test_crc_fallback_matches_binascii():
    import store
    d = bytes(range(256)) * 3
    want = crc32(d)
    saved = store._crc32
    store._crc32 = None
    try:
        mptest.eq(store.crc32(d), want, "own crc32")
        mptest.eq(store.crc32(b"123456789"), 0xCBF43926, "check value")
    finally:
        store._crc32 = saved


def _baseline():
    umount()
    bd = fresh()
    mount(bd)
    st = Store(path())
    st.save(b"first")
    st.save(OLD)           # now: .old = first, current = OLD
    umount()
    return bytes(bd.data)


def _ops_of_save(image):
    bd = RamBdev(image=image)
    mount(bd)
    st = Store(path())
    st.load()
    bd.ops = 0
    st.save(NEW)
    n = bd.ops
    umount()
    return n


def _power_loss_run(image, mode, k):
    bd = RamBdev(image=image)
    mount(bd)
    st = Store(path())
    p0, _ = st.load()
    mptest.eq(p0, OLD, "baseline")
    bd.ops = 0
    bd.mode = mode
    bd.fail_at = k
    ok = None
    try:
        ok = st.save(NEW)
    except Exception as ex:     # Store.save must not raise
        raise mptest.Fail("save raised %r at k=%d %s" % (ex, k, mode))
    umount()
    # reboot: a fresh device object over the surviving bytes
    bd2 = RamBdev(image=bd.data)
    # a file object the loss left open is closed later by its GC finaliser:
    # let that hit the old (already copied) device quietly
    bd.dead = False
    bd.fail_at = 0
    gc.collect()
    try:
        mount(bd2)
    except Exception as ex:
        raise mptest.Fail("fs not mountable after loss at k=%d %s: %r" % (k, mode, ex))
    try:
        p, w = Store(path()).load()
        # and the store still works after the loss
        st3 = Store(path())
        st3.load()
        mptest.true(st3.save(b"after"), "save after reboot")
        mptest.eq(Store(path()).load()[0], b"after", "after")
    finally:
        umount()
    return ok, p


def test_power_loss_at_every_write_of_a_save():
    image = _baseline()
    n = _ops_of_save(image)
    mptest.true(n >= 3, "a save takes several device writes (%d)" % n)
    summary = []
    for mode in ("raise", "drop", "torn"):
        olds = news = 0
        for k in range(1, n + 2):
            ok, p = _power_loss_run(image, mode, k)
            mptest.true(p == OLD or p == NEW, "k=%d %s: got %r" % (k, mode, p if p is None else p[:12]))
            if p == OLD:
                olds += 1
            else:
                news += 1
            if ok:
                mptest.eq(p, NEW, "a save that reported success is durable (k=%d %s)" % (k, mode))
        mptest.true(olds >= 1 and news >= 1, "%s: both outcomes seen (%d old, %d new)" % (mode, olds, news))
        summary.append("%s: %d writes per save, old=%d new=%d" % (mode, n, olds, news))
    print("STORE power-loss: " + "; ".join(summary))


def test_posix_filesystem_too():
    import os as _os
    d = "/tmp/mp_store_test"
    try:
        _os.mkdir(d)
    except OSError:
        pass
    p = d + "/rec"
    for n in (p, p + ".old", p + ".tmp"):
        try:
            _os.remove(n)
        except OSError:
            pass
    st = Store(p)
    mptest.true(st.save(OLD), "save")
    mptest.true(st.save(NEW), "save")
    mptest.eq(Store(p).load()[0], NEW, "load")
    # an interrupted save that left only a complete .tmp is still found
    _os.rename(p, p + ".tmp2")
    _os.rename(p + ".tmp2", p + ".tmp")
    pl, w = Store(p).load()
    mptest.eq(pl, NEW, "from .tmp")


# ---- issue 10 item 4: a record the consumer rejects, generation order -----

import struct


def _raw(name, seq, payload):
    """A CRC-valid record with a chosen sequence number, as Store writes it."""
    import store
    n = len(payload)
    with open(name, "wb") as f:
        f.write(struct.pack("<4sIHHI", b"SRC1", seq, n, 0xFFFF,
                            store._record_crc(seq, n, payload)))
        f.write(payload)


def _bytes(name):
    with open(name, "rb") as f:
        return f.read()


def _no_v2(p):
    return "version 2 unknown" if p.startswith(b"V2") else None


def test_issue10_item04_rejected_newest_falls_back_and_save_keeps_it():
    umount()
    bd = fresh()
    mount(bd)
    try:
        st = Store(path())
        st.save(OLD)
        st.save(b"V2 written by a newer firmware")   # CRC-valid, newest
        good = _bytes(path() + ".old")
        st = Store(path())
        p, w = st.load(_no_v2)
        mptest.eq(p, OLD, "the consumer gets the generation it accepts")
        mptest.true(any("rejected" in x and "version 2" in x for x in w), "says why: %r" % w)
        mptest.true(any("using" in x and ".old" in x for x in w), "says which: %r" % w)
        # the next save replaces the rejected file, never the good .old
        mptest.true(st.save(NEW), "save")
        mptest.eq(_bytes(path() + ".old"), good, ".old still the generation in use")
        p, w = Store(path()).load(_no_v2)
        mptest.eq(p, NEW, "new record")
        mptest.eq(w, [], "clean")
        # a second save moves the new one to .old as usual
        st.save(b"third")
        mptest.eq(Store(path()).load(_no_v2)[0], b"third", "third")
        with open(path() + ".old", "rb") as f:
            mptest.eq(f.read()[HDR_LEN:], NEW, "previous generation kept")
        # nothing acceptable: None, and 'present' tells it apart from a fresh board
        st2 = Store(path())
        p, w = st2.load(lambda p: "no")
        mptest.eq(p, None, "nothing accepted")
        mptest.true(st2.present, "but records were there")
        st3 = Store(MP + "/other.rec")
        mptest.eq(st3.load(lambda p: "no")[0], None, "fresh")
        mptest.eq(st3.present, False, "nothing there")
    finally:
        umount()


def test_issue10_item04_seq_wrap_picks_newer_generation():
    umount()
    bd = fresh()
    mount(bd)
    try:
        _raw(path() + ".old", 0xFFFFFFFF, OLD)
        _raw(path(), 0, NEW)                 # saved after the wrap: the newer one
        st = Store(path())
        p, w = st.load()
        mptest.eq(p, NEW, "0 comes after 0xFFFFFFFF")
        mptest.eq(w, [], "no warnings")
        mptest.true(st.save(b"next"), "save")
        mptest.eq(struct.unpack_from("<I", _bytes(path()), 4)[0], 1, "seq 1 follows 0")
        mptest.eq(Store(path()).load()[0], b"next", "newest")
        # the same across .tmp: a complete .tmp after the wrap wins
        for n in (path(), path() + ".old"):
            os.remove(n)
        _raw(path(), 0xFFFFFFFE, OLD)
        _raw(path() + ".tmp", 0x00000001, NEW)
        mptest.eq(Store(path()).load()[0], NEW, ".tmp after the wrap")
    finally:
        umount()


def test_issue10_item04_tmp_in_use_is_promoted_before_save():
    umount()
    bd = fresh()
    mount(bd)
    try:
        _raw(path(), 7, OLD)
        _raw(path() + ".tmp", 8, NEW)        # a save cut before its renames
        st = Store(path())
        mptest.eq(st.load()[0], NEW, "the complete .tmp is the newest")
        mptest.true(st.save(b"after"), "save")
        mptest.eq(Store(path()).load()[0], b"after", "new current")
        old = _bytes(path() + ".old")
        mptest.eq((struct.unpack_from("<I", old, 4)[0], old[HDR_LEN:]), (8, NEW),
                  ".old = the generation that was in use (not overwritten as .tmp)")
    finally:
        umount()


if __name__ == "__main__":
    mptest.main(globals())
