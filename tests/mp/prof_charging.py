"""Profile of the charger on any port (not a test: a measurement).

Brings the real ChargerApp through a whole session on the in-process rig
(apprig.Rig: plug, handshake, charging, BMS stop, end), then times, with
``time.ticks_us`` (on the QEMU board under ``-icount shift=0``: thousands
of instructions, exact), each task of the app and the pieces of the hot
paths, and prints one line per item: ``PROF name runs total min max``.
Run on the target with ``python -m host_tools.bench --target qemu --profile``.

Items:
* ``task.<name>``, ``sched.pass``: 10 s of steady charging through the app;
* ``stage.<stage>.<task>``: every run of the session and CAN tasks over the
  whole session, by the stage the session was in when the task started
  (``stage.charging.session`` = the session tick in the charging stage);
* ``frame.<msg>.<case>``: one received frame through ``link.on_frame``
  (address filter, transport, decode, the session's handler):
  ``new`` a payload that differs from the last one, ``dup`` the same
  payload as the last accepted one in a later pass, ``fold`` the same
  payload again in the same pass; TP messages per packet (``rts``, ``dt``,
  ``last`` = the packet that completes the message and its decode);
* ``board.recv``: the SIL link board's ``can_recv`` (frozen FIFO, one frame);
* ``pass.*``: whole CAN passes (``link.drain`` on the SIL board's FIFO, as
  the CAN task runs it): ``flood19`` 19 copies of BCL/BSM (a saturated bus),
  ``empty``, ``BCS``/``BMV96`` ``rts`` and ``packets`` (all TP.DT of the
  message in one pass, with the EndOfMsgAck, decode and handler);
* ``frame.<msg>.link`` / ``.decode`` / ``.handler``: the older split, same now.
"""
import time
from bmsscript import bcl, bcs, bsm, u16
from gbt import ids
from gbt import messages as m
from gbt.stages import STAGE_NAMES
from apprig import Rig, tmpdir
from board import CanFrame

us = time.ticks_us
dt = time.ticks_diff
R = {}


def rec(name, t):
    r = R.get(name)
    if r is None:
        R[name] = [1, t, t, t]
    else:
        r[0] += 1
        r[1] += t
        if t < r[2]:
            r[2] = t
        if t > r[3]:
            r[3] = t


def timed(name, fn, *a):
    t0 = us()
    x = fn(*a)
    rec(name, dt(us(), t0))
    return x


def _frame(f, cid, data):
    f.id = cid
    f.dlc = len(data)
    for i in range(len(data)):
        f.data[i] = data[i]


def _tp(link, f, name, pgn, payload, now):
    """One TP (RTS/CTS) transfer through the link, every packet timed."""
    n = len(payload)
    pk = (n + 6) // 7
    _frame(f, ids.ID_TPCM_RX, bytes([0x10] + u16(n) + [pk, 0xFF, pgn & 0xFF, (pgn >> 8) & 0xFF, 0]))
    timed("frame.%s.rts" % name, link.on_frame, now, f)
    t_all = 0
    for k in range(1, pk + 1):
        chunk = list(payload[(k - 1) * 7:k * 7])
        chunk += [0xFF] * (7 - len(chunk))
        _frame(f, ids.ID_TPDT_RX, bytes([k] + chunk))
        t0 = us()
        link.on_frame(now, f)
        t = dt(us(), t0)
        t_all += t
        rec("frame.%s.%s" % (name, "last" if k == pk else "dt"), t)
    rec("frame.%s.all_packets" % name, t_all)


def main():
    r = Rig(tmpdir("prof"))
    app = r.app
    sess = app.session
    state = {"window": False}
    # every task wrapped once: per-stage figures over the whole session,
    # per-task figures ("task.*") only in the steady-charging window
    fns = {}
    for t in app.sched.tasks:
        fn = t.fn
        name = t.name
        fns[name] = fn

        def w(now, fn=fn, name=name, tn="task." + name):
            st = STAGE_NAMES[sess.stage]
            t0 = us()
            fn(now)
            x = dt(us(), t0)
            if name == "session" or name == "can":
                rec("stage.%s.%s" % (st, name), x)
            if state["window"]:
                rec(tn, x)
        t.fn = w
    # the session's own tick by stage (``stage.<stage>.tick``): the session
    # task is this plus the app's part (supervisor hand-over, stage texts)
    tick0 = sess.tick

    def tick_w(now):
        st = STAGE_NAMES[sess.stage]
        t0 = us()
        tick0(now)
        rec("stage.%s.tick" % st, dt(us(), t0))
    sess.tick = tick_w
    for _ in range(3000):
        r.step()
        if r.stage() == "charging":
            break
    for _ in range(500):
        r.step()
    assert app.halted is None and r.stage() == "charging", (app.halted, r.stage())
    sched = app.sched
    rd = sched.run_due

    def run_due_w():
        t0 = us()
        n = rd()
        if n:
            rec("sched.pass", dt(us(), t0))
        return n
    state["window"] = True
    app.sched.run_due = run_due_w
    for _ in range(1000):           # 10 s of charging through the whole app
        r.step()
    app.sched.run_due = rd
    state["window"] = False
    # pieces: one frame through the link, the decoder, the handler
    f = CanFrame()
    link = app.link
    sup = app.sup
    now = r.now
    r.board.lean = True             # frames sent are counted, not kept
    for name, cid, data in (("BCL", ids.ID_BCL, bcl(4100, 1000)), ("BSM", ids.ID_BSM, bsm())):
        _frame(f, cid, data)
        pgn = (cid >> 8) & 0xFF00
        for _ in range(20):
            timed("frame." + name + ".link", link.on_frame, now, f)
            timed("frame." + name + ".decode", m.decode, pgn, f.data, f.dlc, app.bms)
            timed("frame." + name + ".handler", sess.on_message, now, pgn, 0)
    # per case: new payload / duplicate in a later pass / folded in the same pass
    for name, cid, d0, d1 in (("BCL", ids.ID_BCL, bcl(4100, 1000), bcl(4100, 1001)),
                              ("BSM", ids.ID_BSM, bsm(), bsm(0x00, 0xD0 & 0xDF))):
        for k in range(20):
            now += 1
            _frame(f, cid, d1 if k & 1 else d0)
            timed("frame.%s.new" % name, link.on_frame, now, f)
        for k in range(20):
            now += 1
            timed("frame.%s.dup" % name, link.on_frame, now, f)
        for k in range(20):
            timed("frame.%s.fold" % name, link.on_frame, now, f)
    for k in range(5):
        now += 1
        _tp(link, f, "BCS", ids.PGN_BCS, bcs(4000 + k, 1000), now)
    for k in range(3):
        now += 1
        cells = []
        for c in range(96):
            v = 330 + ((c * 7 + k) % 40)
            cells += [v & 0xFF, (v >> 8) | 0x10]
        _tp(link, f, "BMV96", ids.PGN_BMV, bytes(cells), now)
        now += 1
        _tp(link, f, "BMT16", ids.PGN_BMT, bytes([60 + ((c + k) % 9) for c in range(16)]), now)
    # the SIL link board's receive FIFO (frozen into the QEMU image), and
    # whole CAN passes through it: link.drain as the CAN task calls it
    try:
        from simlink import LinkBoard
    except ImportError:
        LinkBoard = None
    if LinkBoard is not None:
        b = LinkBoard()

        def put(cid, data):
            rb = b.rbuf
            for i, x in enumerate(bytes(u16(cid & 0xFFFF) + u16(cid >> 16)) + bytes([len(data)])
                                  + data + b"\xff" * (8 - len(data))):
                rb[i] = x
            b._enqueue(0)
        for k in range(20):
            put(ids.ID_BCL, bcl(4100, 1000))
        for k in range(20):
            timed("board.recv", b.can_recv, f)
        recv = b.can_recv
        burst = app.rx_burst
        budget = getattr(app, "rx_cost", 0)
        drain = getattr(link, "drain", None)
        if drain is None:               # before drain(): the CAN task's own loop
            of = link.on_frame

            def drain(now, recv, f, burst, budget):
                n = 0
                while n < burst and recv(f):
                    of(now, f)
                    n += 1
                return n
        # a saturated bus: 19 frames per 10 ms pass, copies of BCL and BSM
        for k in range(10):
            now += 10
            for j in range(19):
                if j & 1:
                    put(ids.ID_BSM, bsm())
                else:
                    put(ids.ID_BCL, bcl(4100, 1000))
            timed("pass.flood19", drain, now, recv, f, burst, budget)
        timed("pass.empty", drain, now, recv, f, burst, budget)
        # one whole BCS / BMV 96 cells: RTS pass, then the packets' pass
        for k in range(3):
            for name, pgn, payload in (("BCS", ids.PGN_BCS, bcs(4000 + k, 1000)),
                                       ("BMV96", ids.PGN_BMV, bytes(
                                           [b for c in range(96) for b in
                                            ((330 + c % 40) & 0xFF, (330 + c % 40) >> 8)]))):
                now += 10
                n = len(payload)
                pk = (n + 6) // 7
                put(ids.ID_TPCM_RX, bytes([0x10] + u16(n) + [pk, 0xFF, pgn & 0xFF, (pgn >> 8) & 0xFF, 0]))
                timed("pass.%s.rts" % name, drain, now, recv, f, burst, budget)
                now += 10
                for q in range(1, pk + 1):
                    chunk = list(payload[(q - 1) * 7:q * 7])
                    put(ids.ID_TPDT_RX, bytes([q] + chunk + [0xFF] * (7 - len(chunk))))
                timed("pass.%s.packets" % name, drain, now, recv, f, burst, budget)
    for _ in range(20):
        timed("session.tick", tick0, now)
        now += 10
        r.board.clock.advance_to(now)
    for _ in range(20):
        timed("protect.read_inputs", r.board.read_inputs, app.inp)
        timed("protect.evaluate", sup.prot.evaluate, now, app.inp, sup.charging)
        timed("protect.write_outputs", r.board.write_outputs, app.out)
        timed("checks.app_checks", app._checks, now)         # staleness + head (S-1..S-4)
        timed("checks.mid", sup.check_mid, now)              # S-5..S-9
        timed("checks.tail", sup.check_tail, now)            # S-10..S-13
        timed("records.app", app._records, now)
        timed("sup.protect_tick", sup.protect_tick, now)
        timed("sup.check_tick", sup.check_tick, now)
        timed("tel.tick", app.tel.tick, now, sess.stage)
        now += 50
        r.board.clock.advance_to(now)
    # the scheduler's own cost: the tasks unwrapped, every pass timed from
    # outside as the SIL board's loop runs it (app.run_due(now)); overhead =
    # pass time - what the scheduler measured for its tasks
    wrapped = {}
    for t in sched.tasks:
        wrapped[t.name] = t.fn
        t.fn = fns[t.name]
    r.board.clock.advance_to(now)
    r.now = now
    tot0 = sum(t.total_us for t in sched.tasks)
    npass = 0
    ptot = 0
    clock = r.board.clock
    for _ in range(500):
        r.now += 10
        r.plant.update(app.out, r.board.meas)
        r.board.meas.k12_fb = app.out.k12
        while True:
            nd = sched.next_due()
            if nd > r.now:
                break
            clock.advance_to(nd)
            t0 = us()
            x = app.run_due(clock.ms)
            d = dt(us(), t0)
            if x:
                npass += 1
                ptot += d
    tot1 = sum(t.total_us for t in sched.tasks)
    ov = ptot - (tot1 - tot0)
    R["sched.overhead_per_pass"] = [npass, ov, ov // npass, ov // npass]
    for t in sched.tasks:
        t.fn = wrapped[t.name]
    now = r.now
    # the check tick, piece by piece (steady charging)
    ctx = sup.ctx
    from safety.supervisor import _h11_quiet
    for _ in range(20):
        now += 100
        clock.advance_to(now)
        timed("checks.ctx_integrate", ctx.integrate, now)
        timed("checks.h11_quiet", _h11_quiet, sup, now)
        for c in sup.checks:
            timed("checks.S%02d.eval" % c.ID, c.eval, ctx, now)
        timed("checks.risk_steps13", sup.risk.steps, 1, 14, now)
    r.now = now
    # the rest of the session: the BMS ends it (BST), statistics, unlock
    r.board.lean = False
    r.now = now
    r.ev.stop()
    for _ in range(3000):
        r.step()
        if r.stage() == "done":
            break
    for k in sorted(R):
        n, tot, lo, hi = R[k]
        print("PROF %s %d %d %d %d" % (k, n, tot, lo, hi))
    print("PROFDONE")


main()
