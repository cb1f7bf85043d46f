"""diag.trace and diag.commands helpers on the real micropython.

The full commands are exercised against the running SIL firmware in
tests/test_diagnostics_sil.py; here: the CAN trace's bounds and hooks with a
minimal stand-in app/console, and the pure text helpers.
"""
import mptest
from mptest import eq, true
from diag.trace import Trace
from diag import commands as C


class _Clock:
    def __init__(self):
        self.t = 1000

    def ticks_ms(self):
        return self.t


class _Obj:
    pass


class _Out:
    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s
        return len(s)


class _Stream:
    def __init__(self):
        self.tx_dropped = 0


class _Console:
    def __init__(self):
        self.mode = 0
        self.out = _Out()
        self.stream = _Stream()
        self.polls = 0

    def poll(self, now):
        self.polls += 1
        return 0

    def is_friendly(self):
        return self.mode == 0


class _Frame:
    def __init__(self, cid, data):
        self.id = cid
        self.data = bytearray(data)
        self.dlc = len(data)


def _app(frames, cfg=None):
    app = _Obj()
    app.clock = _Clock()
    app.cfg = cfg or {}
    q = list(frames)

    def recv(frame):
        if not q:
            return False
        f = q.pop(0)
        frame.id, frame.dlc = f.id, f.dlc
        for i in range(f.dlc):
            frame.data[i] = f.data[i]
        return True

    app.sent = []
    app._can_recv = recv
    app.session = _Obj()
    app.session.tx = _Obj()
    app.session.tx._send = lambda cid, b, n: app.sent.append(cid) or True
    app.link = _Obj()
    app.link.tp = _Obj()
    app.link.tp._send = lambda cid, b, n: False
    return app


def test_trace_prints_frames_and_restores_hooks():
    app = _app([_Frame(0x181056F4, b"\x10\x0e\xa0\x0f\x02")])
    con = _Console()
    recv0, tx0, tp0 = app._can_recv, app.session.tx._send, app.link.tp._send
    t = Trace(app, con)
    t.start()
    true(app._can_recv is not recv0 and app.session.tx._send is not tx0, "hooked")
    f = _Frame(0, b"")
    f.data = bytearray(8)
    eq(app._can_recv(f), True, "recv passes through")
    eq(app.session.tx._send(0x1812F456, bytearray(b"\xa0\x0f\x82\x0f\x00\x00\xfd\xff"), 8),
       True, "send result passes through")
    eq(app.link.tp._send(0x1CECF456, bytearray(8), 8), False, "a refused send stays refused")
    eq(app.sent, [0x1812F456], "the real send ran")
    con.poll(0)                                   # the shadowed poll: console, then trace
    eq(con.polls, 1, "console polled")
    eq(con.out.text, "(1.000000) can0 181056F4#100EA00F02\n"
                     "(1.000000) can0 1812F456#A00F820F0000FDFF\n"
                     "(1.000000) can0 1CECF456#0000000000000000\n", "lines")
    t.stop()
    true(app._can_recv is recv0 and app.session.tx._send is tx0 and app.link.tp._send is tp0,
         "originals back")
    true("poll" not in con.__dict__, "console poll is the class method again")


def test_trace_is_bounded():
    app = _app([], {"diag.trace_frames": 8, "diag.trace_lines": 3})
    con = _Console()
    t = Trace(app, con)
    t.start()
    con.mode = 1                                  # raw REPL: nothing printed
    for i in range(20):
        app.session.tx._send(0x1812F456, bytearray(8), 8)
    con.poll(0)
    eq(con.out.text, "", "silent in raw REPL")
    eq((t.seen, t.lost), (20, 12), "ring of 8 kept, the rest counted")
    con.mode = 0
    con.poll(0)
    lines = con.out.text.split("\n")
    eq(lines[0], "[trace: 12 frames not shown]", "loss reported")
    eq(len(lines), 1 + 3 + 1, "3 lines per poll")
    for _ in range(5):
        con.poll(0)
    eq(t.shown, 8, "all kept frames shown")
    t.stop()


def test_trace_stops_when_nobody_reads():
    app = _app([])
    con = _Console()

    class _Dropping(_Out):
        def write(self, s):
            con.stream.tx_dropped += len(s)
            return len(s)

    con.out = _Dropping()
    t = Trace(app, con)
    t.start()
    app.session.tx._send(0x1812F456, bytearray(8), 8)
    con.poll(0)
    eq(t.on, False, "switched itself off")


def test_trace_filter():
    app = _app([])
    con = _Console()
    t = Trace(app, con)
    t.start(0x1200)
    app.session.tx._send(0x1812F456, bytearray(8), 8)    # CCS
    app.session.tx._send(0x1826F456, bytearray(3), 3)    # CHM
    con.poll(0)
    eq(con.out.text.count("\n"), 1, "only CCS")
    true("1812F456" in con.out.text, "CCS shown")
    t.stop()


def test_helpers():
    # firmware seconds (since 2020-01-01 UTC): Unix - 1577836800
    eq(C.date(189388800 + 3723), "2026-01-01 01:02:03", "date")
    eq(C.date(131373296), "2024-02-29 12:34:56", "leap day")
    eq(C.date(42), "2020-01-01 00:00:42", "the epoch")
    eq(C.date(-631152000 + 42), "clock unset", "an RTC that restarted at 2000-01-01")
    eq(C.d1(4001), "400.1", "0.1 units")
    eq(C.d1(-5, False), "-0.5", "negative")
    eq(C.d1(-1), "-", "NA")
    w = C.wrap("word " * 30)
    true(all(len(l) <= 80 for l in w) and len(w) == 2, "wrapped at 80")
    eq(C.cem_names(0x00040001), "BRM BCL", "CEM bits")
    true(C.hint("E-stop latched: release and reset_estop()").startswith("release"), "hint")
    eq(C.hint("ok"), None, "no hint")
    rec = (5, 0, 0, 7, "trip", 108, 50, "")
    eq(C.detail(rec), "H-8 leakage current value 50", "trip decoded")
    eq(C.detail((6, 0, 0, 3, "stage", 8, 7, "")), "charging <- precharge", "stage decoded")


mptest.main(globals())
