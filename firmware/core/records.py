"""The records pass's plumbing: the event-log records the session pass
queued (``logq``, written in order before anything else is logged), the
supervisor's safety events and the link's intrusion events -> bench text
(``app.event``), event log and telemetry event records.  Events are rare;
their text is for people, so this may allocate."""
from diag import eventlog as _evlog
from safety.risk import EV_RAISE as _EV_RAISE, EV_CLEAR as _EV_CLEAR, \
    EV_LOCKOUT as _EV_LOCKOUT, EV_FAILSAFE as _EV_FAILSAFE


class EventPump:
    def __init__(self, app):
        self.app = app
        self.logq = []                    # event-log records queued by _stage_changed
        self.ev_seq = app.sup.events.seq  # next safety event to read
        self.ev = [0, 0, 0, 0, 0]
        self.ix_seq = 0                   # next intrusion event to read
        self.ix = [0, 0, 0]

    def log_pending(self):
        """Write the event-log records the session pass queued (in order,
        before anything the records pass logs itself)."""
        q = self.logq
        log = self.app.log
        while q:
            t, code, a, b, text = q.pop(0)
            log.log(t, code, a, b, text, False)
        log.commit()                      # one littlefs commit for the batch

    def intrusion_events(self, now):
        app = self.app
        # Rare by construction (each is a protocol violation): text allowed.
        ix = app.link.ix
        s = max(self.ix_seq, ix.oldest())
        e = self.ix
        now_s = app.rtc_s()
        from gbt.intrusion import name as ix_name
        while s < ix.seq:
            if ix.read(s, e):
                app.event("intrusion", "%s 0x%x" % (ix_name(e[1]), e[2]))
                app.log.log(now_s, _evlog.EV_INTRUSION, e[1], e[2])
                app.tel.event(now, _evlog.EV_INTRUSION, e[1], e[2])
            s += 1
        self.ix_seq = ix.seq

    def safety_events(self, now, ev):
        app = self.app
        # Events are rare; their text is for people, so it may allocate.
        s = max(self.ev_seq, ev.oldest())
        e = self.ev
        now_s = app.rtc_s()
        while s < ev.seq:
            ev.read(s, e)
            app.event("safety", ev.text(s))
            kind, ident, level, value = e[1], e[2], e[3], e[4]
            if kind == _EV_RAISE:
                if ident > 100 and level >= 3:
                    app.log.log(now_s, _evlog.EV_TRIP, ident, value, None, False)
                else:
                    app.log.log(now_s, _evlog.EV_RISK_RAISED, ident, level, None, False)
                app.tel.event(now, _evlog.EV_RISK_RAISED, ident, level)
            elif kind == _EV_CLEAR:
                app.log.log(now_s, _evlog.EV_RISK_CLEARED, ident, level, None, False)
                app.tel.event(now, _evlog.EV_RISK_CLEARED, ident, level)
            elif kind == _EV_LOCKOUT:
                app.log.log(now_s, _evlog.EV_LOCKOUT, ident, value, None, False)
            elif kind == _EV_FAILSAFE:
                app.log.log(now_s, _evlog.EV_FAILSAFE, 0, 0, None, False)
            s += 1
        self.ev_seq = ev.seq
        app.log.commit()                 # the pass's records in one commit
