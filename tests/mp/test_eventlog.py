"""diag.eventlog on the real micropython: bounded rotation, torn records,
recent(), and a littlefs RAM disk like a board's flash.

Also a file generator for the host decoder test:
    micropython -c "import test_eventlog as t; t.generate('dir')"
"""
import os

import mptest
from diag import eventlog as E
from doubles import RamBdev

_BASE = "/tmp/_mp_evlog"


def _clean(d, files=6):
    for i in range(files):
        try:
            os.remove("%s/events.%d" % (d, i))
        except OSError:
            pass
    try:
        os.rmdir(d)
    except OSError:
        pass


def _fresh(name):
    d = "%s_%s" % (_BASE, name)
    _clean(d)
    return d


def _size(p):
    try:
        return os.stat(p)[6]
    except OSError:
        return -1


def generate(d, reboot=False):
    """20 events over 3 rotating files of 8 records, then a torn tail:
    the first 20 bytes of a 21st record, as a power cut leaves it.
    ``reboot``: then start again (the torn file rotates away) and log 2
    more events."""
    _clean(d)
    log = E.EventLog(d, 8 * E.REC_SIZE, 3)
    log.log(1000, E.EV_BOOT, 1, 0, "unix")
    for i in range(1, 20):
        log.log(1000 + i, E.EV_STAGE if i % 2 else E.EV_RISK_RAISED, i, i % 4, "ev%d" % i)
    log.close()
    tmp = E.EventLog(d + "_t", 4096, 1)
    tmp.log(2000, E.EV_TRIP, 7, 999, "torn")
    tmp.close()
    rec = open(d + "_t/events.0", "rb").read()
    _clean(d + "_t")
    with open(d + "/events.0", "ab") as f:
        f.write(rec[:20])
    if reboot:
        log = E.EventLog(d, 8 * E.REC_SIZE, 3)
        log.log(3000, E.EV_BOOT, 1, 0, "reboot")
        log.log(3001, E.EV_OPERATOR, E.OP_RESET, 0, "console")
        log.close()
    print("WRITTEN", log.seq)


def test_rotation_at_the_bound():
    d = _fresh("rot")
    log = E.EventLog(d, 10 * E.REC_SIZE, 3)
    for i in range(35):
        mptest.true(log.log(100 + i, E.EV_STAGE, i, -i, "s%d" % i), "logged")
        for k in range(3):
            mptest.true(_size("%s/events.%d" % (d, k)) <= 10 * E.REC_SIZE, "file bound")
    mptest.eq(_size(d + "/events.3"), -1, "never more than 3 files")
    mptest.eq([_size("%s/events.%d" % (d, k)) for k in range(3)],
              [5 * 32, 10 * 32, 10 * 32], "sizes after 35 events")
    recs = log.read_all()
    mptest.eq([r[0] for r in recs], list(range(10, 35)), "oldest 10 dropped, rest in order")
    r = recs[-1]
    mptest.eq(r, (34, 0, 134, E.EV_STAGE, "stage", 34, -34, "s34"), "decoded tuple")
    mptest.eq(log.rotations, 3, "rotations")
    mptest.eq(log.errors, 0, "no errors")
    log.close()
    _clean(d)


def test_torn_record_skipped_and_appends_continue():
    d = _fresh("torn")
    log = E.EventLog(d, 4096, 2)
    for i in range(5):
        log.log(10 + i, E.EV_CEM, 1 << i, 0, "cem")
    log.close()
    # power cut in the middle of the 6th record
    good = open(d + "/events.0", "rb").read()
    with open(d + "/events.0", "ab") as f:
        f.write(good[:17])
    recs, skipped = E.scan(open(d + "/events.0", "rb").read())
    mptest.eq((len(recs), skipped), (5, 17), "torn tail skipped on read")
    # reboot: the torn file is rotated away, numbering continues
    log = E.EventLog(d, 4096, 2)
    mptest.eq((log.seq, log.boot, log.torn), (5, 1, 1), "recovered seq/boot")
    mptest.eq(_size(d + "/events.1"), 5 * 32 + 17, "torn file kept as events.1")
    log.log(20, E.EV_BOOT, 1, 0, "again")
    recs = log.read_all()
    mptest.eq([r[0] for r in recs], [0, 1, 2, 3, 4, 5], "all complete records, in order")
    mptest.eq((recs[-1][1], recs[-1][4]), (1, "boot"), "boot 1")
    log.close()
    _clean(d)


def test_corrupt_record_in_the_middle_costs_only_itself():
    d = _fresh("mid")
    log = E.EventLog(d, 4096, 1)
    for i in range(4):
        log.log(i, E.EV_OPERATOR, E.OP_STOP, i)
    log.close()
    data = bytearray(open(d + "/events.0", "rb").read())
    data[32 + 13] ^= 0x40                       # bit flip inside record 1
    recs, skipped = E.scan(data)
    mptest.eq([r[0] for r in recs], [0, 2, 3], "record 1 dropped, 2 and 3 found")
    mptest.eq(skipped, 32, "skipped bytes")
    # a half record spliced in front of valid ones: resync on magic + CRC
    recs, skipped = E.scan(bytes(data[:10]) + bytes(data[64:]))
    mptest.eq([r[0] for r in recs], [2, 3], "resync")
    _clean(d)


def test_recent_newest_last_across_files():
    d = _fresh("recent")
    log = E.EventLog(d, 4 * E.REC_SIZE, 4)
    for i in range(13):
        log.log(500 + i, E.EV_RISK_RAISED if i % 3 else E.EV_RISK_CLEARED, i, 2)
    r = log.recent(6)
    mptest.eq([x[0] for x in r], [7, 8, 9, 10, 11, 12], "last 6, oldest first")
    mptest.eq([x[4] for x in r[-4:]], ["risk-cleared", "risk-raised", "risk-raised",
                                       "risk-cleared"], "names")
    mptest.eq(len(log.recent(100)), 13, "all there are")
    mptest.eq(log.recent(0), [], "none")
    log.close()
    _clean(d)


def test_text_and_values_are_bounded():
    d = _fresh("text")
    log = E.EventLog(d, 4096, 1)
    log.log(1, E.EV_FAILSAFE, 2 ** 40, -(2 ** 40), "ZeroDivisionError")
    log.log(2, E.EV_TRIP, 1, 2, b"\xe6\xb8\xa9\xe5\xba\xa6\xe8\xbf\x87\xe9\xab\x98")
    log.log(3, 999, 0, 0)
    r = log.read_all()
    mptest.eq(r[0][5:], (0x7FFFFFFF, -0x80000000, "ZeroDivi"), "clamped, 8 chars")
    mptest.eq(r[1][7], "????????", "non-ASCII shown as ?")
    mptest.eq((r[2][3], r[2][4], r[2][7]), (999, "?", ""), "unknown code")
    mptest.eq(log.log(4, E.EV_TRIP, 0, 0, 12345), False, "wrong text type: refused")
    mptest.eq(log.errors, 1, "counted")
    mptest.eq(E.name(E.EV_LOCKOUT), "lockout", "name()")
    mptest.eq(len(E.NAMES), E.EV_UPDATE + 1, "a name for every code (the last code)")
    log.close()
    _clean(d)


def test_version1_records_read_in_firmware_seconds():
    # firmware before the 2020 epoch wrote version 1: u32 Unix seconds, or
    # (no RTC) small numbers; both still decode, in firmware seconds
    import struct
    recs = []
    for t in (1767225600, 1000):
        buf = bytearray(E.REC_SIZE)
        struct.pack_into("<BBHIIii8sH", buf, 0, E.MAGIC, 1, E.EV_TRIP, len(recs), t, 3, 4,
                         b"ovp", 0)
        c = E.crc16(buf, 0, 30)
        buf[30] = c & 0xFF
        buf[31] = c >> 8
        recs.append(bytes(buf))
    v2 = bytearray(E.REC_SIZE)
    struct.pack_into(E.FMT, v2, 0, E.MAGIC, E.VERSION, E.EV_BOOT, 2, -5, 1, 0, b"", 0)
    c = E.crc16(v2, 0, 30)
    v2[30] = c & 0xFF
    v2[31] = c >> 8
    got, skipped = E.scan(recs[0] + recs[1] + bytes(v2))
    mptest.eq(skipped, 0, "all read")
    mptest.eq(E.VERSION, 2, "this firmware writes version 2")
    mptest.eq([r[2] for r in got], [189388800, -1, -5],
              "2026-01-01 converted; v1 uptime: no date; v2 unset clock as logged")


def _crc_py(buf, start, end):
    t = E._CRC_TABLE
    c = 0xFFFF
    for i in range(start, end):
        c = ((c << 8) & 0xFFFF) ^ t[((c >> 8) ^ buf[i]) & 0xFF]
    return c


def test_crc_machine_code_equals_the_loop():
    # crc16 / crc16_mv run a viper loop on MicroPython: the same value as
    # the bytecode loop (kept for CPython) on every length, offset and byte
    mptest.eq(E.crc16(b"123456789", 0, 9), 0x29B1, "check value")
    seed = 12345
    for n in range(0, 80):
        buf = bytearray(n)
        for i in range(n):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            buf[i] = seed >> 16 & 0xFF
        for a, b in ((0, n), (n // 3, n), (0, n // 2), (n // 4, n - n // 4)):
            mptest.eq(E.crc16(buf, a, b), _crc_py(buf, a, b), "crc16 %d %d..%d" % (n, a, b))
            mptest.eq(E.crc16_mv(memoryview(buf)[a:b]), _crc_py(buf, a, b), "crc16_mv %d" % n)
    try:
        E.crc16(bytearray(4), 0, 5)
        mptest.true(False, "out of bounds must raise, not read past the buffer")
    except IndexError:
        pass


def test_batch_is_one_commit_and_reads_back():
    # log(..., sync=False) + commit(): the records of a batch, in order,
    # complete on the file after the commit (one littlefs commit)
    d = _fresh("batch")
    log = E.EventLog(d, 8 * E.REC_SIZE, 3)
    try:
        for i in range(11):                # across a rotation
            mptest.eq(log.log(i, E.EV_STAGE, i, 0, None, False), True, "cached")
        log.commit()
        log.close()
        recs = E.EventLog(d, 8 * E.REC_SIZE, 3).read_all()
        mptest.eq([r[5] for r in recs], list(range(11)), "all there, in order")
        mptest.eq(log.errors, 0, "no errors")
    finally:
        log.close()
        _clean(d)


def test_unwritable_directory_never_raises():
    log = E.EventLog("/proc/_no_such_dir/state", 4096, 2)
    mptest.eq(log.log(1, E.EV_BOOT, 0, 0, "x"), False, "not written")
    mptest.eq(log.errors, 1, "counted")
    mptest.eq(log.recent(5), [], "nothing to show")


def test_log_is_small_and_float_free():
    import gc
    d = _fresh("alloc")
    log = E.EventLog(d, 64 * E.REC_SIZE, 2)
    try:
        log.log(0, E.EV_BOOT, 0, 0, "warm")
        gc.collect()
        before = gc.mem_free()
        gc.disable()
        for i in range(10):
            log.log(i, E.EV_STAGE, i, 0, "abc")
        used = before - gc.mem_free()
        gc.enable()
        mptest.true(used < 10 * 256, "under 256 bytes per event (%d for 10)" % used)
    finally:
        # closed even when the check fails: a file left open is closed by a
        # GC finaliser later, in the middle of another test's file I/O
        gc.enable()
        log.close()
        _clean(d)


def test_on_littlefs_like_a_board():
    bdev = RamBdev(64, 512)          # the board's flash in RAM (doubles)
    os.VfsLfs2.mkfs(bdev)
    os.mount(os.VfsLfs2(bdev), "/_lfs")
    try:
        log = E.EventLog("/_lfs/state", 4 * E.REC_SIZE, 3)
        for i in range(15):
            log.log(i, E.EV_STAGE, i, 0)
        log.close()
        log = E.EventLog("/_lfs/state", 4 * E.REC_SIZE, 3)   # reboot
        log.log(99, E.EV_BOOT, 1, 0)
        recs = log.read_all()
        mptest.eq([r[0] for r in recs], list(range(4, 16)), "rotated on lfs")
        mptest.eq(recs[-1][1], 1, "boot counter")
        mptest.eq(log.errors, 0, "no errors")
        log.close()
    finally:
        os.umount("/_lfs")


if __name__ == "__main__":
    mptest.main(globals())
