"""The console's CAN commands: ``can()``, ``trace()``, ``intrusion()``.

A mixin of ``diag.commands.Diag`` (one concept: what the bus and the
protocol link saw).  Counters are read from the components' public
attributes (board counters, ``BmsLink``, ``TransportReceiver``,
``ChargerTx``); nothing here changes the CAN path except ``trace``, which
hooks it through ``diag.trace.Trace`` while on."""
from rt.clock import ticks_diff
from gbt import ids
from gbt.chargertx import MSG_NAMES
from board import CAN_STATE_NAMES
from diag.eventtext import cem_names

# BMS messages in the order of a session, for can()'s last-seen table.
_BMS_PGNS = (ids.PGN_BHM, ids.PGN_BRM, ids.PGN_BCP, ids.PGN_BRO, ids.PGN_BCL,
             ids.PGN_BCS, ids.PGN_BSM, ids.PGN_BMV, ids.PGN_BMT, ids.PGN_BSP,
             ids.PGN_BST, ids.PGN_BSD, ids.PGN_BEM)
# Every message the trace filter knows by name (BMS, charger, transport).
_TRACE_PGNS = _BMS_PGNS + (ids.PGN_CHM, ids.PGN_CRM, ids.PGN_CTS, ids.PGN_CML,
                           ids.PGN_CRO, ids.PGN_CCS, ids.PGN_CST, ids.PGN_CSD,
                           ids.PGN_CEM, ids.PGN_TPCM, ids.PGN_TPDT)


class CanCommands:
    # -- CAN -----------------------------------------------------------------
    def can_lines(self):
        app = self.app
        brd = app.board
        c = [0, 0, 0, 0, 0]
        brd.can_counters(c)
        st = brd.can_state()
        lk = app.link
        tp = lk.tp
        now = self.now()
        L = ["bus %s  rx %d  tx %d  errors tx %d rx %d  overruns %d  burst max %d/%d" % (
            CAN_STATE_NAMES[st] if 0 <= st < len(CAN_STATE_NAMES) else st,
            c[3], c[2], c[0], c[1], c[4], app.rx_backlog_max, app.rx_burst)]
        L.append("link rx %d  ok %d  ignored %d  bad length %d  bad range %d  unknown %d" % (
            lk.rx, lk.msgs, lk.ignored, lk.bad_len, lk.bad_range, lk.unknown))
        L.append("TP done %d  aborts sent %d rcvd %d  errors %d (last %d)  dups %d  "
                 "retransmits %d" % (tp.completed, tp.aborts_sent, tp.aborts_rcvd,
                                     tp.errors, tp.last_error, tp.dups, tp.retransmits))
        seen = []
        for pgn in _BMS_PGNS:
            t = lk.last_ok[pgn >> 8]
            seen.append("%s %s" % (ids.name_of(pgn), "-" if t < 0 else ticks_diff(now, t)))
        L.append("last seen (ms ago): " + "  ".join(seen))
        tx = app.session.tx
        L.append("sent: " + "  ".join("%s %d" % (MSG_NAMES[i], tx.sent[i])
                                      for i in range(len(MSG_NAMES)))
                 + "  refused %d" % sum(tx.fail))
        s = app.session
        L.append("session: CEM sent %s  invalid msgs %d  stale 0x%02x" % (
            cem_names(s.cem), s.rx_bad, app.sup.stale))
        L.append(self.tracer.status())
        return L

    def can(self):
        """CAN frames rx/tx, errors, bus state, per-message age, transport."""
        self.emit(self.can_lines())

    # -- intrusion monitor (C-4) ----------------------------------------------
    def intrusion(self):
        """CAN intrusion monitor: events per kind since boot, the frames
        behind the counts (foreign source, not for us), the recent events."""
        from gbt import intrusion as X
        from gbt.link import IXC_FOREIGN, IXC_NOTUS
        link = self.app.link
        ix = link.ix
        L = ["intrusion events %d: " % ix.total() + "  ".join(
            "%s %d" % (X.name(k), ix.count[k]) for k in range(1, X.N_KINDS) if ix.count[k])]
        c = link.ixc
        L.append("frames: foreign source %d (last id 0x%08x)  not for us %d (last id 0x%08x)"
                 "  unknown PGN %d  BRM/BCP refused %d" % (
                     c[IXC_FOREIGN], c[IXC_FOREIGN + 1] & 0x1FFFFFFF, c[IXC_NOTUS],
                     c[IXC_NOTUS + 1] & 0x1FFFFFFF, link.unknown, link.gated))
        e = [0, 0, 0]
        for q in range(ix.oldest(), ix.seq):
            if ix.read(q, e):
                L.append("  t=%d ms  %s 0x%x" % (e[0], X.name(e[1]), e[2]))
        self.emit(L)

    # -- trace ---------------------------------------------------------------
    def trace(self, on=None, pgn=None):
        """trace(True) prints every CAN frame as "t id dlc data" (bounded);
        trace(True, "BCL") only one message; trace(False) stops; trace() status."""
        t = self.tracer
        if on is None:
            self.emit([t.status()])
            return
        if not on:
            t.stop()
            self.emit([t.status()])
            return
        p = 0
        if isinstance(pgn, str):
            for q in _TRACE_PGNS:
                if ids.name_of(q) == pgn.upper():
                    p = q
            if not p:
                self.emit(["unknown message name %r" % pgn])
                return
        elif pgn:
            p = int(pgn)
        t.start(p)
        self.emit(["trace on%s (at most %d lines per poll; trace(False) stops)"
                   % ((" " + ids.name_of(p)) if p else "", t.lines)])
