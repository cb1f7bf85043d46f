"""Operator actions at the console: start, stop and the latch clearances.

A mixin of ``diag.commands.Diag`` (one concept: what an operator may do to
the charger, each logged as an ``EV_OPERATOR`` record).  Every action goes
through the public method of the component that owns the state
(``session.operator_start``, ``sup.rearm`` ...), which refuses what is not
safe; these only word the answer."""
from gbt.stages import STAGE_NAMES, IDLE, CONNECTED, DONE
from safety.risk import name_of, H3, H7
from diag import eventlog as ev


class OperatorCommands:
    def start(self):
        """Operator start (when plugged and no session runs)."""
        app = self.app
        st = app.session.stage
        if app.halted:
            msg = "refused: halted: %s" % app.halted
        elif st == IDLE:
            msg = "no vehicle plugged: nothing to start"
        elif st == CONNECTED or st == DONE:
            app.session.operator_start()
            self._op(ev.OP_START)
            msg = "start requested (stage %s); why() tells if it is refused" % STAGE_NAMES[st]
        else:
            msg = "a session is already running (stage %s)" % STAGE_NAMES[st]
        self.emit([msg])

    def stop(self):
        """Operator stop: ramp down, CST (manual), end the session normally."""
        st = self.app.session.stage
        self.app.session.operator_stop()
        self._op(ev.OP_STOP)
        if st == IDLE or st == CONNECTED or st == DONE:
            self.emit(["no session running (a pending start is cancelled)"])
        else:
            self.emit(["stop requested in stage %s: current down, CST, end" % STAGE_NAMES[st]])

    def ack(self):
        """Acknowledge the "needs confirmation" flag (SOC anomaly S-12/S-13)."""
        had = self.app.sup.acknowledge()
        if had:
            self._op(ev.OP_ACK, had)
            self.emit(["acknowledged: %s" % name_of(had)])
        else:
            self.emit(["nothing to acknowledge"])

    def reset_estop(self):
        """Clear the E-stop latch (refused while pressed), then rearm."""
        sup = self.app.sup
        if not sup.reset_estop():
            self.emit(["refused: the E-stop is still pressed"])
            return
        self._op(ev.OP_RESET, H3)
        msg = "E-stop latch cleared"
        if sup.tripped and sup.trip_cause == H3:
            msg += "; trip rearmed" if sup.rearm() else "; trip not rearmed yet: rearm()"
        self.emit([msg])

    def rearm(self):
        """Leave a finished trip (refused while the cause or a latch remains)."""
        sup = self.app.sup
        if not sup.tripped:
            self.emit(["not tripped"])
        elif sup.rearm():
            self._op(ev.OP_RESET)
            self.emit(["rearmed: a new session may start"])
        else:
            self.emit(["refused: trip sequence running, cause still present or "
                       "latched (risks())"])

    def clear_contactor_fault(self):
        """Clear the H-7 latch after inspection (refused while K1/K2 read closed)."""
        if self.app.sup.clear_contactor_fault():
            self._op(ev.OP_RESET, H7)
            self.emit(["contactor fault latch cleared"])
        else:
            self.emit(["refused: K1/K2 feedback still reads closed"])

    def clear_store_fault(self):
        """Clear the unusable-safety-record latch: the persisted state starts
        again from defaults (no latches, no lockouts)."""
        if self.app.sup.clear_store_fault():
            self._op(ev.OP_RESET, 0, "store")
            self.emit(["safety record latch cleared: state reset to defaults"])
        else:
            self.emit(["nothing to clear: the safety record was usable"])
