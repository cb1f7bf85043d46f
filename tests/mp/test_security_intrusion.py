"""Issue 13, C-4: the CAN intrusion monitor raises an event for each attack.

A scripted BMS charges (``bmsscript.Bench``); the monitor's once-a-second
look (``gbt.ixwatch.IxWatch``, the app's slow task) is ticked every second
as the app does.  Each attack of the issue is injected and must raise its
own kind; a legitimate session from plug-in to the end must raise none.
The app-level path (event log, telemetry, console counters) is in
tests/mp/test_security_console.py's neighbour below
(test_c4_app_logs_intrusion_to_event_log_and_telemetry)."""
import mptest
from mptest import eq, true
from bmsscript import Bench, bcl, bcs, bcp, brm, bst, bem, u16
from gbt import ids
from gbt import stages as W
from gbt import intrusion as X
from gbt.ixwatch import IxWatch


class Mon:
    """Bench + IxWatch ticked every 1000 ms of bench time."""

    def __init__(self, cfg=None):
        self.b = Bench(cfg)
        self.w = IxWatch(self.b.link, self.b.bms, cfg)
        self.t = 0

    def run(self, ms):
        b = self.b
        end = b.now + ms
        while b.now < end:
            b.step()
            if b.now - self.t >= 1000:
                self.t = b.now
                self.w.tick(b.now, b.session.stage == W.CHARGING)

    def kinds(self):
        ix = self.b.link.ix
        e = [0, 0, 0]
        out = []
        for s in range(ix.oldest(), ix.seq):
            if ix.read(s, e):
                out.append((e[1], e[2]))
        return out


def _tp_in(b, pgn, payload, rts_only=False):
    n = len(payload)
    pk = (n + 6) // 7
    b.deliver(ids.ID_TPCM_RX, bytes([0x10] + u16(n) + [pk, 0xFF, pgn & 0xFF, (pgn >> 8) & 0xFF, 0]))
    if rts_only:
        return
    for k in range(pk):
        chunk = payload[k * 7:k * 7 + 7]
        b.deliver(ids.ID_TPDT_RX, bytes([k + 1]) + chunk + b"\xff" * (7 - len(chunk)))


def _charging(m):
    m.b.wait_stage("charging", 10000)
    m.run(3000)
    eq(m.kinds(), [], "a normal start notes nothing")


def test_c4_legitimate_session_raises_nothing():
    m = Mon()
    m.b.wait_stage("charging", 10000)
    m.run(20000)
    m.b.session.operator_stop()           # the session ends normally
    m.run(15000)
    true(m.b.stage() in ("done", "finish", "statistics", "stopping"), m.b.stage())
    m.run(10000)
    eq(m.kinds(), [], "no intrusion event in a whole legitimate session")


def test_c4_foreign_source_address():
    m = Mon()
    _charging(m)
    cid = (6 << 26) | (0x10 << 16) | (0x56 << 8) | 0x33   # a BCL-like frame from SA 0x33
    m.b.deliver(cid, bcl(7000, 4000))
    m.run(1000)
    eq(m.kinds(), [(X.IX_FOREIGN, cid)], "foreign-sa with the frame's id")
    true(m.b.bms.req_v != 7000, "the foreign frame was not taken as demand")


def test_c4_unexpected_pgns():
    m = Mon()
    _charging(m)
    m.b.deliver((6 << 26) | (0x30 << 16) | (0x56 << 8) | 0xF4, b"\x01\x02")   # PF 0x30: no such PGN
    m.run(1000)
    pdu2 = (6 << 26) | (0xFE << 16) | (0xCA << 8) | 0xF4                      # PDU2 from the BMS
    m.b.deliver(pdu2, b"\x00" * 8)
    m.run(1000)
    eq(m.kinds(), [(X.IX_PGN, 0x3000), (X.IX_PGN, pdu2)], "unexpected-pgn twice")


def test_c4_bcp_and_brm_after_their_stage():
    m = Mon()
    _charging(m)
    m.b.ev.mute.add("BCS")
    m.run(300)
    _tp_in(m.b, ids.PGN_BCP, bcp(max_i=4000, max_v=7000))
    m.run(300)
    _tp_in(m.b, ids.PGN_BRM, brm(vin=b"LFAKEVIN000000001"))
    m.b.ev.mute.discard("BCS")
    m.run(1000)
    eq(m.kinds(), [(X.IX_BCP_LATE, ids.PGN_BCP), (X.IX_BRM_LATE, ids.PGN_BRM)], "late BCP, BRM")
    eq(m.b.bms.max_v, 4200, "limits kept")


def test_c4_rate_anomaly_bcl_flood():
    m = Mon()
    _charging(m)
    for k in range(120):                  # 120 BCL in one 10 ms step (20 per second legit)
        m.b.deliver(ids.ID_BCL, bcl(4100 - (k & 1), 1000))
    m.run(1000)
    eq(m.kinds(), [(X.IX_RATE, ids.PGN_BCL)], "rate on BCL")
    m.run(3000)
    eq(len(m.kinds()), 1, "once: the normal rate afterwards raises nothing")


def test_c4_tp_trickle_and_conflicting_rts():
    m = Mon()
    _charging(m)
    m.b.ev.mute.add("BCS")
    m.run(300)
    # conflicting RTS: a BMV transfer opened, then an RTS for BMT
    _tp_in(m.b, ids.PGN_BMV, bytes(40), rts_only=True)
    _tp_in(m.b, ids.PGN_BMT, bytes(20), rts_only=True)
    m.run(20)
    # trickle: one packet every 700 ms (within T1) of a 6-packet message
    # (allowed: 1250 + 6 x 200 ms)
    m.run(3000)
    pay = bytes(42)
    _tp_in(m.b, ids.PGN_BMV, pay, rts_only=True)
    for k in range(6):
        m.run(700)
        m.b.deliver(ids.ID_TPDT_RX, bytes([k + 1]) + pay[k * 7:k * 7 + 7])
    m.b.ev.mute.discard("BCS")
    m.run(1000)
    k = [e[0] for e in m.kinds()]
    true(X.IX_TP_PREEMPT in k, "tp-preempt: %r" % m.kinds())
    true(X.IX_TP_TRICKLE in k, "tp-trickle: %r" % m.kinds())


def test_c4_demand_and_measurement_jumps_outside_physics():
    m = Mon()
    _charging(m)
    m.b.ev.req_v = 4100 - 2000            # demand voltage -200 V within a second
    m.run(1000)
    m.run(1000)
    true((X.IX_PHYSICS, X.PHY_REQ_V) in m.kinds(), "demand jump: %r" % m.kinds())
    n = len(m.kinds())
    m.b.ev.soc = m.b.bms.soc + 40         # SOC +40 % at once
    m.run(2000)
    true((X.IX_PHYSICS, X.PHY_SOC) in m.kinds()[n:], "soc jump: %r" % m.kinds())


def test_c4_bst_and_bem_outside_their_stage():
    m = Mon({"session.auto_start": False})
    m.b.plant.cc1 = 4000                  # plugged, no session started: aux power off
    m.run(500)
    eq(m.b.stage(), "connected", "no session")
    m.b.deliver(ids.ID_BST, bst())
    m.b.deliver(ids.ID_BEM, bem())
    m.run(100)
    eq(m.kinds(), [(X.IX_STAGE_MSG, ids.PGN_BST), (X.IX_STAGE_MSG, ids.PGN_BEM)], "stage-msg x2")


mptest.main(globals())
