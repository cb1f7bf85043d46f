"""The firmware's wall-clock epoch (2020-01-01 UTC, ``rt.calendar``) and the
paths that read the RTC, allocation-free with a realistic date.

Unix time (1.77e9 in 2026) is above 2**30, the small-int limit of a 32-bit
MicroPython port: an RTC in Unix seconds made every ``rtc_s()`` call and
every sum with it a heap long int.  On the unix port (64-bit) that never
shows; on the 32-bit QEMU target (tests/target/test_qemu_units.py) these
cases fail with MemoryError unless the whole chain stays in small ints:
harness epoch (Unix seconds) -> board converts once -> ``app.rtc_s()`` ->
slow task (lockout bookkeeping) and telemetry re-sync / date stamps.
"""
import micropython

import mptest
from mptest import eq, true
from rt import calendar as C
from doubles import lockstep

# 2026-03-14 23:59:50 UTC as the harness gives it (Unix seconds): the app
# below crosses midnight under the heap lock
UNIX_2026 = 1773532790


def test_calendar_epoch_and_civil():
    eq(C.EPOCH_YEAR, 2020, "epoch year")
    eq(C.from_unix(1577836800), 0, "2020-01-01 00:00 UTC is 0")
    eq(C.civil(0), (2020, 1, 1, 0, 0, 0), "epoch")
    eq(C.civil(-1), (2019, 12, 31, 23, 59, 59), "a second before (clock not set)")
    eq(C.civil(C.from_unix(1709210096)), (2024, 2, 29, 12, 34, 56), "leap day")
    eq(C.civil(C.from_unix(1767225600) + 3723), (2026, 1, 1, 1, 2, 3), "2026")
    eq(C.civil(C.from_unix(4102444800)), (2100, 1, 1, 0, 0, 0), "2100 (not a leap year)")
    eq(C.civil(C.from_unix(4107542400)), (2100, 3, 1, 0, 0, 0), "2100-03-01")
    eq(C.civil(C.from_unix(951782400)), (2000, 2, 29, 0, 0, 0), "2000-02-29 (negative)")
    eq(C.civil_days(C.EPOCH_DAYS_2000 * -1), (2000, 1, 1), "2000 epoch in days")
    eq(C.civil_days(-C.EPOCH_DAYS_UNIX), (1970, 1, 1), "1970 epoch in days")
    eq(C.EPOCH_2000, 631152000, "20 years")
    eq(C.to_unix(0), 1577836800, "back to Unix")
    # small ints until 2054 on every port
    true((2 ** 30 - 1) // 86400 // 365 >= 34, "2020 + 34 years fit a small int")
    eq(C.civil(2 ** 30 - 1)[0], 2054, "last small-int second is in 2054")


def test_calendar_civil_allocates_only_its_tuple():
    # every day 2020..2054 in one sweep: matches a running date; and the
    # arithmetic is small-int only (the tuple is the only allocation)
    y, m, d = 2020, 1, 1
    mdays = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    for day in range(0, 12784, 1):
        got = C.civil_days(day)
        if got != (y, m, d):
            raise mptest.Fail("day %d: %r != %r" % (day, got, (y, m, d)))
        n = mdays[m - 1] + (1 if m == 2 and y % 4 == 0 and (y % 100 or y % 400 == 0) else 0)
        d += 1
        if d > n:
            d = 1
            m += 1
            if m > 12:
                m = 1
                y += 1
    eq((y, m, d), (2055, 1, 1), "swept to 2054-12-31")


class _Link:
    """The SIL/QEMU link board with a transport that swallows everything
    (no harness): its ``rtc_s`` is the path the harness's epoch takes."""

    @staticmethod
    def make(epoch_s):
        from simlink import LinkBoard

        class Quiet(LinkBoard):
            name = "quiet-link"

            def _send(self, buf, n):
                pass

            def _recv(self, off, n):
                return 0

        return Quiet(True, epoch_s)


def test_link_board_converts_the_harness_epoch_once():
    b = _Link.make(UNIX_2026)
    eq(b.rtc0, UNIX_2026 - 1577836800, "firmware seconds at t = 0")
    vals = [0, 0, 0]
    micropython.heap_lock()
    try:
        vals[0] = b.rtc_s()
        b.clock.advance_to(10000)
        vals[1] = b.rtc_s()
        vals[2] = b.rtc_s() - vals[0]
    finally:
        micropython.heap_unlock()
    eq(C.civil(vals[0]), (2026, 3, 14, 23, 59, 50), "the harness's date")
    eq(C.civil(vals[1]), (2026, 3, 15, 0, 0, 0), "10 s later")
    eq(vals[2], 10, "arithmetic on it")


def _app(epoch_s, name):
    import charger
    from doubles import tmpdir
    d = tmpdir("rtc_" + name)
    b = _Link.make(epoch_s)
    app = charger.ChargerApp(b, "/nonexistent-config.json", state_dir=d)
    return b, app


def test_app_slow_and_records_tasks_heap_locked_with_a_2026_date():
    """Regression (32-bit target): the slow task reads the RTC every
    second and hands it to the lockout bookkeeping, the records task
    re-syncs the telemetry date from it and stamps records across
    midnight; all of it under heap_lock with the harness's 2026 epoch."""
    b, app = _app(UNIX_2026, "slow")
    tel = app.tel
    tel.sync_ms = 1000                 # re-sync every second (default 60 s)
    sched = app.sched
    clock = b.clock
    t = 0

    run_due = app.run_due

    def run_to(target):
        lockstep(clock, sched, target, run_due)

    run_to(3000)                       # warm-up: first RTC read, first GC
    b.olen = 0
    slow = sched.tasks[[x.name for x in sched.tasks].index("slow")]
    rec = sched.tasks[[x.name for x in sched.tasks].index("records")]
    runs0 = (slow.runs, rec.runs, tel.records)
    t = 3000
    ev = [0]
    micropython.heap_lock()
    try:
        while t < 20000:                # 17 s: midnight at 10 s
            t += 50
            run_to(t)
            if t % 1000 == 0:
                tel.event(t, 8, 1, 2)   # a record with a date stamp each second
                b.olen = 0              # (the harness would have read it)
        ev[0] = app.rtc_s()
    finally:
        micropython.heap_unlock()
    true(app.halted is None, "no MemoryError in a task (fail-safe): %r" % (app.halted,))
    eq(app.fail_count, 0, "no exception")
    true(slow.runs - runs0[0] >= 16, "slow task ran under the lock (%d)" % (slow.runs - runs0[0]))
    true(rec.runs - runs0[1] >= 300, "records task ran under the lock")
    eq(tel.records - runs0[2], 17, "one event record per second")
    eq(C.civil(ev[0]), (2026, 3, 15, 0, 0, 10), "the RTC after 20 s")
    # the last slow tick ran at 19.025 s (offset 25 ms): the RTC of second 19
    eq(app.sup.wall_s, ev[0] - 1, "the slow task handed the RTC to the supervisor")
    eq((tel.year, tel.month, tel.day, tel.hour, tel.minute, tel.second),
       (2026, 3, 15, 0, 0, 10), "telemetry stamp crossed midnight")


def test_app_local_time_and_event_log_use_the_firmware_epoch():
    b, app = _app(1767225600, "local")          # 2026-01-01 00:00 UTC
    eq(app.rtc_s(), 189388800, "2026-01-01 in firmware seconds")
    eq(app._local_time(), (2026, 1, 1, 8, 0, 0), "CTS in Beijing time (+480 min)")
    recs = app.log.recent(5)
    eq(recs[0][4], "boot", "boot event")
    eq(recs[0][2], 189388800, "logged in firmware seconds")


def test_u32_fields_heap_locked_with_numbers_past_2_30():
    """u32 protocol and record fields whose value may pass 2**30: the
    charger number (CRM, CSD, telemetry header) and the telemetry board ms
    after 12.4 days of uptime (ticks wrap at 2**30 on 32-bit boards)."""
    from gbt.sessioncfg import SessionConfig
    from gbt import messages as M
    from diag import telemetry as T
    from diag import telrec as R
    from board import Inputs, Outputs
    from gbt.bmsdata import BmsData
    from rt.clock import SimClock
    no = 4294967294                           # charger.id max - 1
    c = SessionConfig({"charger.id": no})
    eq(c.charger_no_le, b"\xfe\xff\xff\xff", "split once")
    buf = bytearray(8)
    out = bytearray(2)

    class Sink:
        def __init__(self):
            self.b = bytearray(T.MAX_SIZE)
            self.n = 0

        def write(self, mv):
            n = len(mv)
            for i in range(n):
                self.b[i] = mv[i]
            self.n = n

    sink = Sink()
    clock = SimClock()
    tel = T.Telemetry({"charger.id": no}, clock, BmsData(), Inputs(), Outputs(), sink,
                      R.SimRtc(clock, C.from_unix(UNIX_2026)))
    from time import ticks_add
    t0 = ticks_add(0, -500)                   # board ticks about to wrap (2**30 on 32-bit)
    tel.tick(ticks_add(t0, -1000), 3)         # warm-up: first record, RTC read
    t = t0
    micropython.heap_lock()
    try:
        out[0] = M.enc_crm(buf, True, c.charger_no_le, c.region)
        out[1] = M.enc_csd(buf, 45, 123, c.charger_no_le)
        for k in range(40):                   # across the wrap
            tel.tick(t, 3)
            t = ticks_add(t, 50)
    finally:
        micropython.heap_unlock()
    eq(list(out), [8, 8], "encoded")
    eq(bytes(buf[4:8]), b"\xfe\xff\xff\xff", "CSD charger number")
    M.enc_crm(buf, True, no, None)
    eq(bytes(buf[1:5]), b"\xfe\xff\xff\xff", "an int works too (allocates on 32-bit)")
    r = R.decode(sink.b)
    eq((r["charger_id"], r["type_name"]), (no, "demand"), "header charger id")
    eq(r["t_ms"], ticks_add(t0, 39 * 50) & 0x3FFFFFFF, "t_ms: board ms modulo 2**30")
    eq(tel.counts[T.T_DEMAND], 41, "a demand record every tick, across the wrap too")


mptest.main(globals())
