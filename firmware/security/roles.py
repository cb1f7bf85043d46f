"""Console roles (issue 13, C-1): challenge-response unlock with a per-charger key.

Roles: VIEWER (default: read-only diagnostics), OPERATOR (start/stop,
acknowledge, rearm, E-stop reset), MAINTAINER (configuration, latches, and
arbitrary Python: raw REPL / ``mpremote exec``).

Unlock, with the charger's 32-byte master key ``K`` (``keys.json``,
provisioned by ``make deploy``; ``host_tools/seckeys.py``)::

    board:  challenge("operator")  -> prints nonce N (16 random bytes, hex)
    host:   R = HMAC-SHA256(K_role, "evc-unlock|" role "|" charger_id "|" N)
            with K_role = HMAC-SHA256(K, "evc-console-role:" role)
    board:  unlock("operator", "<R hex>")

A nonce is used once: a wrong answer, a new challenge or ``console.challenge_s``
passing burns it (no replay, no second guess on the same nonce).
``console.tries`` wrong answers in a row refuse every unlock for
``console.lockout_s``.  A role expires ``console.unlock_s`` after the unlock;
``lock()`` drops it at once.  Every unlock, failure, lockout, expiry and
privileged command is written to the event log (EV_AUTH: who = role,
when = the record's time, what = action + command name).

Role keys derived from the master key let a site give an operator the
operator key only (``host_tools.seckeys role-key``): it cannot answer a
maintainer challenge.

Imported only when the console starts with ``console.auth`` = 1; the hash
itself (``security.hmac256``) only at the first challenge.
"""
from micropython import const
import config

VIEWER = const(0)
OPERATOR = const(1)
MAINTAINER = const(2)
ROLE_NAMES = ("viewer", "operator", "maintainer")

# EV_AUTH actions (event log field a; b = role)
AU_UNLOCK = const(1)
AU_FAIL = const(2)
AU_LOCKOUT = const(3)
AU_LOCK = const(4)
AU_EXPIRE = const(5)
AU_PRIV = const(6)          # a privileged command ran (text: its name)
AU_EXEC = const(7)          # maintainer Python (raw REPL / exec); text: first bytes
AU_REFUSED = const(8)       # a command needing a role was refused (text: name)
AU_NAMES = ("?", "unlock", "unlock-failed", "unlock-lockout", "lock", "expired",
            "command", "exec", "refused")

_cfg = config.get


def role_of(name):
    for i in range(len(ROLE_NAMES)):
        if ROLE_NAMES[i] == name:
            return i
    return -1


def role_key(master, role):
    from security.hmac256 import hmac_sha256
    return hmac_sha256(master, b"evc-console-role:" + ROLE_NAMES[role].encode())


def response(key, role, charger_id, nonce, derived=False):
    """The answer to a challenge (``key``: the master key, or the role key
    with ``derived``).  The host tool computes exactly this."""
    from security.hmac256 import hmac_sha256
    k = key if derived else role_key(key, role)
    return hmac_sha256(k, b"evc-unlock|%s|%d|" % (ROLE_NAMES[role].encode(), charger_id), nonce)


def read_keys(path):
    """The key file (a flat JSON object of hex strings, at most 1 KB, read
    by ``config``'s strict parser): a dict, empty if absent or unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read(1025)
        if len(data) > 1024:
            return {}
        d = config.parse(data)
        return d if isinstance(d, dict) else {}
    except Exception:
        return {}


def load_key(path, name="console"):
    """Hex key ``name`` from the key file; None if absent or unreadable."""
    v = read_keys(path).get(name)
    if not isinstance(v, str):
        return None
    try:
        from binascii import unhexlify
        k = unhexlify(v)
    except Exception:
        return None
    return k if len(k) >= 16 else None


class RoleAuth:
    """Role state of one console.  ``ticks_ms``: the monotonic clock;
    ``log(action, role, text)``: the event-log hook (may be None)."""

    def __init__(self, key, charger_id, ticks_ms, cfg=None, log=None):
        self._key = key                 # master key (bytes) or None: nothing unlocks
        self.charger_id = charger_id
        self._ms = ticks_ms
        self._log = log
        self.unlock_ms = _cfg(cfg, "console.unlock_s") * 1000
        self.tries = _cfg(cfg, "console.tries")
        self.lockout_ms = _cfg(cfg, "console.lockout_s") * 1000
        self.challenge_ms = _cfg(cfg, "console.challenge_s") * 1000
        self._role = VIEWER
        self._until = 0
        self._nonce = None
        self._n_role = 0
        self._n_t = 0
        self.fails = 0                  # wrong answers in a row
        self._locked_t = None           # lockout start (ticks) or None
        self.unlocks = 0
        self.failures = 0               # since boot
        self.refusals = 0

    def _note(self, action, role, text=None):
        if self._log is not None:
            try:
                self._log(action, role, text)
            except Exception:
                pass

    def _diff(self, t):
        from rt.clock import ticks_diff
        return ticks_diff(self._ms(), t)

    @property
    def role(self):
        if self._role and self._diff(self._until) >= 0:
            self._note(AU_EXPIRE, self._role)
            self._role = VIEWER
        return self._role

    def remaining_s(self):
        if not self.role:
            return 0
        return -self._diff(self._until) // 1000

    def locked_out(self):
        if self._locked_t is None:
            return False
        if self._diff(self._locked_t) >= self.lockout_ms:
            self._locked_t = None
            self.fails = 0
            return False
        return True

    def challenge(self, role):
        """A fresh nonce (bytes) for unlocking ``role`` (OPERATOR/MAINTAINER);
        replaces any earlier one.  Raises ValueError when refused."""
        if role != OPERATOR and role != MAINTAINER:
            raise ValueError("role must be operator or maintainer")
        if self._key is None:
            raise ValueError("no console key provisioned on this charger (keys.json)")
        if self.locked_out():
            raise ValueError("unlocking refused for %d s after %d failed tries" % (
                (self.lockout_ms - self._diff(self._locked_t)) // 1000 + 1, self.tries))
        from security.rng import random_bytes
        self._nonce = random_bytes(16)
        self._n_role = role
        self._n_t = self._ms()
        return self._nonce

    def unlock(self, role, answer):
        """Check ``answer`` (bytes) to the pending challenge for ``role``.
        Returns None on success, else the reason (text)."""
        if self.locked_out():
            return "locked out after %d failed tries" % self.tries
        nonce = self._nonce
        self._nonce = None                      # used once, whatever happens
        if nonce is None:
            why = "no challenge pending (call challenge() first)"
        elif role != self._n_role:
            why = "the pending challenge is for another role"
        elif self._diff(self._n_t) > self.challenge_ms:
            why = "challenge expired"
        else:
            from security.hmac256 import equal
            want = response(self._key, role, self.charger_id, nonce)
            if equal(want, answer):
                self._role = role
                from rt.clock import ticks_add
                self._until = ticks_add(self._ms(), self.unlock_ms)
                self.fails = 0
                self.unlocks += 1
                self._note(AU_UNLOCK, role)
                return None
            why = "wrong answer"
        self.fails += 1
        self.failures += 1
        self._note(AU_FAIL, role, why[:8])
        if self.fails >= self.tries:
            self._locked_t = self._ms()
            self._note(AU_LOCKOUT, role)
        return why

    def lock(self):
        if self._role:
            self._note(AU_LOCK, self._role)
        self._role = VIEWER
        self._nonce = None
