"""The supervisor's persisted safety state: loads and saves the lockout
record and its latches through ``store.Store`` (``store.*``, schema in
``safety.lockout`` beside the record format), admits a session and runs the
operator's latch commands.  The policy (counting, lock, cap, confirmation)
and the record format are ``safety.lockout``.

Slow tick and operator commands only, never the fast paths: it may
allocate.
"""
import config
from safety.risk import EV_RESET, H3, H7, name_of
from safety.lockout import L_ESTOP, L_CONTACTOR, L_STORE, LOCKED, CAPPED, CONFIRM


class Latches:
    """The supervisor's persisted safety state (``sup.latches``): loads and
    saves the lockout and its latches (``store.*``), admits a session
    (``start_allowed``) and runs the operator's latch commands;
    ``Supervisor`` keeps the public methods, which hand over to it.  A latch
    found at boot trips at the first protection tick (``load`` returns the
    cause)."""

    def __init__(self, sup, cfg, lock, store=None):
        self.sup = sup
        self.lock = lock
        if store is None:
            import store as _store
            store = _store.Store(config.get(cfg, "store.path"), config.get(cfg, "store.max_bytes"))
        self.store = store
        self.warnings = []           # what the load found (the app shows them)

    def load(self):
        """Load the persisted latches; returns the cause a latch found at
        boot trips with (H3, H7) or 0."""
        # The store tries the generations newest first and keeps the first
        # one ``unpack`` accepts (a newer record version, a malformed record
        # under a valid CRC: the next older generation).  A record was there
        # but none is usable: the latches are unknown, so refuse to charge
        # (L_STORE, persisted) until an operator clears it; never defaults.
        st = self.store
        lock = self.lock
        try:
            st.accept = lock.unpack
            data, warn = st.load()
            present = getattr(st, "present", data is not None)
        except Exception as ex:        # a store must not stop the charger booting
            data, warn, present = None, ["store: load failed (%s)" % ex], True
        self.warnings = list(warn)
        err = lock.unpack(data) if data is not None else None
        if err or (data is None and present):
            lock.clear()
            lock.set_latch(L_STORE)
            self.warnings.append("store: no usable safety record%s: charging "
                                 "refused until clear_store_fault()"
                                 % ((" (%s)" % err) if err else ""))
        if lock.latched & L_ESTOP:
            return H3
        if lock.latched & L_CONTACTOR:
            return H7
        return 0

    def save(self):
        """Persist lockout/latches now (allocates, does file I/O)."""
        ok = self.store.save(self.lock.pack())
        if ok:
            self.lock.dirty = False
        return ok

    def start_allowed(self, vin, now_date):
        """May a session for ``vin`` start?  ``now_date`` = wall-clock
        seconds (RTC).  Returns (bool, reason).  Call it before every start:
        it also arms the lockout current cap (mode "cap") for the session it
        admits."""
        sup = self.sup
        if sup.failed:
            return False, "fail-safe latched (%s): reboot" % (sup.last_exc,)
        if self.lock.latched & L_STORE:
            return False, "safety record unusable (latches unknown): inspect, clear_store_fault()"
        if self.lock.latched & L_ESTOP or sup.inp.estop:
            return False, "E-stop latched: release and reset_estop()"
        if self.lock.latched & L_CONTACTOR:
            return False, "contactor fault (H-7): inspect, clear_contactor_fault()"
        if sup.tripped:
            return False, "tripped: %s, rearm()" % sup.trip_name
        st, chk, until = self.lock.status(vin, now_date)
        if st == CONFIRM:
            return False, "needs confirmation (%s): acknowledge()" % name_of(chk)
        if st == LOCKED:
            return False, "VIN locked out (%s) for %d s" % (name_of(chk), until - now_date)
        if not sup.charging:
            # A level-II stop request belongs to the session that raised it;
            # left set, it would stop the next admitted session at once.
            sup.stop_request = 0
        if st == CAPPED:
            sup._cap = self.lock.cap_dA
            return True, "VIN capped to %d dA (%s)" % (self.lock.cap_dA, name_of(chk))
        sup._cap = sup.rated_i
        return True, "ok"

    def _reset_event(self, code, level):
        sup = self.sup
        sup.events.add(sup.clock.ticks_ms(), EV_RESET, code, level, 0)

    def reset_estop(self):
        """Operator reset of the E-stop latch; refused while still pressed."""
        if self.sup.inp.estop:
            return False
        self.lock.clear_latch(L_ESTOP)
        self._reset_event(H3, 3)
        return True

    def clear_contactor_fault(self):
        """Operator clears H-7 after inspection; refused while the feedback
        still disagrees with the (open) command."""
        if self.sup.inp.k12_fb and not self.sup._k_applied:
            return False
        self.lock.clear_latch(L_CONTACTOR)
        self._reset_event(H7, 3)
        return True

    def clear_store_fault(self):
        """Operator accepts the loss of an unusable persisted record (L_STORE):
        the state starts from defaults and is saved at the next slow tick."""
        had = self.lock.latched & L_STORE
        self.lock.clear_latch(L_STORE)
        return bool(had)

    def acknowledge(self):
        """Operator confirms the SOC anomaly (needs-confirmation flag)."""
        had = self.lock.acknowledge()
        self._reset_event(had, 0)
        return had
