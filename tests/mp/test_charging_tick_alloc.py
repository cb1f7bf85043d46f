"""The charging-stage tick of the real app allocates nothing.

``ChargerApp`` (firmware/charger.py, every task: protect, can, session,
records, checks, slow) runs on an in-process fake board whose CAN is wired
to ``bmsscript.ScriptedBms``; the scripted BMS brings it to the charging
stage, then 12 s of simulated charging (BCL 50 ms, BCS by TP 250 ms, BSM
250 ms in; CCS out) run as ordinary scheduler passes under
``micropython.heap_lock()``.  An allocation raises MemoryError inside a
task, which the app turns into fail-safe (H-9): so "not halted, still
charging, outputs still live" plus the expected traffic is the proof.
"""
import micropython
import mptest
from mptest import eq, true
from bmsscript import bcl, bcs, bsm
from gbt import ids
from apprig import Rig, tmpdir as _tmpdir
from doubles import lockstep


def tp_frames(pgn, payload):
    """RTS + every TP.DT of one BMS -> charger multi-packet message."""
    n = len(payload)
    k = (n + 6) // 7
    fr = [(ids.ID_TPCM_RX, bytes([0x10, n & 0xFF, n >> 8, k, 0xFF, pgn & 0xFF,
                                  (pgn >> 8) & 0xFF, pgn >> 16]))]
    for i in range(k):
        chunk = payload[7 * i:7 * i + 7]
        fr.append((ids.ID_TPDT_RX, bytes([i + 1]) + chunk + b"\xff" * (7 - len(chunk))))
    return fr


def bmv(cells):
    p = bytearray()
    for c in range(cells):
        v = 330 + (c % 7)                 # 3.30..3.36 V, group 0
        p.append(v & 0xFF)
        p.append(v >> 8)
    return bytes(p)


def bmt(probes):
    return bytes([50 + 25 + (k % 3) for k in range(probes)])


def test_charging_tick_allocates_nothing():
    r = Rig(_tmpdir("tick"))
    for _ in range(3000):                         # 30 s to charging
        r.step()
        if r.stage() == "charging":
            break
    eq(r.stage(), "charging", "reached charging (texts %r)" % (r.board.texts,))
    for _ in range(500):                          # 5 s: ramped up, steady state
        r.step()
    app = r.app
    b = r.board
    true(app.halted is None, "not halted before the lock: %r" % app.halted)
    # Steady-state BMS traffic, preassembled (the scripted BMS allocates).
    payload = bcs(3500, 1000)
    f_bcl = (ids.ID_BCL, bcl(4100, 1000))
    f_bsm = (ids.ID_BSM, bsm())
    f_rts = (ids.ID_TPCM_RX, bytes([0x10, 9, 0, 2, 0xFF, 0x00, 0x11, 0x00]))
    f_dt1 = (ids.ID_TPDT_RX, bytes([1]) + payload[:7])
    f_dt2 = (ids.ID_TPDT_RX, bytes([2]) + payload[7:] + b"\xff" * 5)
    q_bcl = [f_bcl]
    q_tp = [f_bcl, f_rts, f_dt1, f_dt2]
    q_bsm = [f_bsm]
    q_none = []
    # The optional messages (BMV / BMT / BSP, multi-packet) and transport
    # aborts, in the same window: an allocation on any of them must show.
    q_bmv = tp_frames(ids.PGN_BMV, bmv(96))              # 192 bytes, 28 packets
    q_bmt = tp_frames(ids.PGN_BMT, bmt(10))              # 10 bytes, 2 packets
    q_bsp = tp_frames(ids.PGN_BSP, bytes(range(16)))     # 16 bytes, 3 packets
    q_bsp1 = [(ids.ID_BSP, bytes(8))]                    # BSP in a single frame
    # the BMS aborts a BMV transfer after 3 packets (Abort, reason 3)
    q_abort = tp_frames(ids.PGN_BMV, bmv(96))[:4] + [
        (ids.ID_TPCM_RX, bytes([0xFF, 3, 0xFF, 0xFF, 0xFF, 0x00, 0x15, 0x00]))]
    # an RTS larger than any message: the charger answers Abort (reason 2)
    q_big = [(ids.ID_TPCM_RX, bytes([0x10, 0xD0, 0x07, 0xFF, 0xFF, 0x00, 0x15, 0x00]))]
    extra = {2: q_bmv, 4: q_bmt, 6: q_bsp, 7: q_bsp1, 9: q_abort, 10: q_big}
    plant = r.plant
    meas = b.meas
    out = app.out
    sched = app.sched
    clock = b.clock
    b.lean = True
    runs0 = [t.runs for t in sched.tasks]
    n_tx0 = b.n_tx
    tp = app.link.tp
    bcs0 = tp.completed
    ab_sent0 = tp.aborts_sent
    ab_rcvd0 = tp.aborts_rcvd
    bms = app.bms
    bms.cells.bmv_cells = 0
    bms.cells.bmt_probes = 0
    rec0 = b.records
    now = r.now
    run_due = app.run_due
    steps = 1200                                   # 12 s, 1200 control ticks
    micropython.heap_lock()
    try:
        for k in range(steps):
            now += 10
            plant.update(out, meas)
            meas.k12_fb = out.k12
            if k % 25 == 0:
                b.rxq = q_tp
            elif k % 25 == 12:
                b.rxq = q_bsm
            elif k % 5 == 0:
                b.rxq = q_bcl
            elif k % 100 == 1 and k // 100 in extra:
                b.rxq = extra[k // 100]           # each once, between two BCS
            else:
                b.rxq = q_none
            b.rx_i = 0
            lockstep(clock, sched, now, run_due)
    finally:
        micropython.heap_unlock()
    r.now = now
    true(app.halted is None, "no allocation (MemoryError -> fail-safe): %r" % app.halted)
    eq(r.stage(), "charging", "still charging")
    runs = [t.runs - r0 for t, r0 in zip(sched.tasks, runs0)]
    names = [t.name for t in sched.tasks]
    eq(runs[names.index("session")], steps, "one session tick per 10 ms")
    eq(runs[names.index("protect")], steps * 10 // app.cfg["sched.protect_ms"],
       "protect every sched.protect_ms")
    true(runs[names.index("slow")] >= 11, "slow task ran under the lock too")
    eq(tp.completed - bcs0, steps // 25 + 3, "every BCS, BMV, BMT, BSP reassembled")
    eq((bms.cells.bmv_cells, bms.cells.bmt_probes), (96, 10), "BMV and BMT decoded under the lock")
    eq(tp.aborts_rcvd - ab_rcvd0, 1, "the BMS's Abort handled")
    eq(tp.aborts_sent - ab_sent0, 1, "the charger's Abort (oversized RTS) sent")
    true(b.n_tx - n_tx0 >= steps // 5 + 2 * steps // 25, "CCS + CTS + EndOfMsgAck sent")
    true(b.records > rec0, "telemetry records sent")
    eq(out.k12, 1, "K1/K2 still closed")
    eq(out.pwr_en, 1, "power stage still on")
    eq(out.i_set, 1000, "following BCL")


mptest.main(globals())
