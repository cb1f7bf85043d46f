"""Console roles enforced at the console's input (issue 13, C-1).

``install(console, diag, app)`` (from ``appbuild.start_console`` when
``console.auth`` is 1) sets ``console.gate``: every command the console
receives -- friendly REPL, paste mode, raw REPL, raw paste, i.e. every
``mpremote exec/eval/fs/run`` -- is shown to the gate before anything is
compiled.

* Role below maintainer: the text must be one command call with literal
  arguments (``security.cmdline``).  The command must be in ``NEED`` with
  a role at or below the current one; it is then called directly (nothing
  is compiled or executed).  Anything else is refused with a
  ``Refused`` error (in raw mode after the ``\\x04`` separator, so
  ``mpremote`` reports it and exits non-zero) and counted.
* Maintainer: the console runs the text as Python, as before; every such
  command is logged (EV_AUTH "exec", its first 8 bytes).

A privileged command that runs is logged (EV_AUTH "command", the role,
its name) besides the record the command writes itself (EV_OPERATOR).
A refused one is logged too.  Whatever the role, the outputs stay under
the safety supervisor: a command (or maintainer Python) writes the same
``Outputs`` the session writes, and the protection tick's trip path and
H-12 interlock override them (docs/security.md).
"""
from security.roles import (VIEWER, OPERATOR, MAINTAINER, ROLE_NAMES, role_of,
                            RoleAuth, load_key, AU_PRIV, AU_EXEC, AU_REFUSED)
from security.cmdline import parse

# The role each command needs.  A name not here needs the maintainer (it
# can only be reached as Python).
NEED = {
    "status": VIEWER, "risks": VIEWER, "faults": VIEWER, "can": VIEWER,
    "sched": VIEWER, "why": VIEWER, "cfg": VIEWER, "trace": VIEWER,
    "help": VIEWER, "challenge": VIEWER, "unlock": VIEWER, "lock": VIEWER,
    "whoami": VIEWER, "intrusion": VIEWER,
    # C-2, the TCU's relay of the platform link: a sealed frame authenticates
    # itself; a plain stop / VIN authorisation is only as strong as the
    # plain platform topic, and sec.policy require refuses it
    "link": VIEWER, "pstop": VIEWER, "pvin": VIEWER, "platlink": VIEWER,
    "start": OPERATOR, "stop": OPERATOR, "ack": OPERATOR, "acknowledge": OPERATOR,
    "rearm": OPERATOR, "reset_estop": OPERATOR,
    "cfg_set": MAINTAINER, "clear_contactor_fault": MAINTAINER,
    "clear_store_fault": MAINTAINER,
}
# Commands a board adds (the SIL bench's plug()/unplug()) need this role.
BOARD_ROLE = OPERATOR


class Refused(Exception):
    pass


class ConsoleGate:
    def __init__(self, console, auth, app=None):
        self.con = console
        self.auth = auth
        self.app = app
        self.need = dict(NEED)
        self.refused = 0
        self.execs = 0

    def __call__(self, src, friendly):
        """True: handled here (a permitted command ran); False: run ``src``
        as Python (maintainer); raises ``Refused``."""
        auth = self.auth
        role = auth.role
        try:
            call = parse(src)
        except ValueError as e:
            call = None
            perr = str(e)
        if role >= MAINTAINER:
            if call is not None and self.need.get(call[0], MAINTAINER) > VIEWER:
                auth._note(AU_PRIV, role, call[0][:8])
            elif call is None or call[0] not in self.need:
                self.execs += 1
                auth._note(AU_EXEC, role, _tag(src))
            return False
        if call is None:
            self._refuse("python", "arbitrary Python needs the maintainer role (%s); "
                         "help() lists the commands" % perr)
        name, args, kw, printed = call
        need = self.need.get(name)
        if need is None:
            self._refuse(name[:8], "%s() is not a console command; arbitrary Python "
                         "needs the maintainer role" % name)
        if need > role:
            self._refuse(name[:8], "%s() needs the %s role (now %s): challenge(\"%s\") "
                         "then unlock(\"%s\", answer)" % (
                             name, ROLE_NAMES[need], ROLE_NAMES[role], ROLE_NAMES[need],
                             ROLE_NAMES[need]))
        fn = self.con.defaults.get(name)     # (not the namespace: Python may rebind it)
        if fn is None:
            raise Refused("%s() is not available on this board" % name)
        if need > VIEWER:
            auth._note(AU_PRIV, role, name[:8])
        r = fn(*args, **kw)
        if printed or (friendly and r is not None):
            self.con.out.write(repr(r) + "\n")
        return True

    def _refuse(self, tag, msg):
        self.refused += 1
        self.auth.refusals += 1
        self.auth._note(AU_REFUSED, self.auth.role, tag)
        raise Refused(msg)

    # -- the commands of the gate itself (console names) --------------------
    def challenge(self, role="operator"):
        """challenge("operator"|"maintainer"): a nonce to answer with the
        charger's key (host_tools.seckeys answer ...)."""
        r = role_of(role)
        n = self.auth.challenge(r)
        from binascii import hexlify
        self.con.out.write("challenge %s charger %d nonce %s\n" % (
            ROLE_NAMES[r], self.auth.charger_id, hexlify(n).decode()))

    def unlock(self, role, answer):
        """unlock(role, "hex answer"): take the role (expires, lock() drops it)."""
        r = role_of(role)
        try:
            from binascii import unhexlify
            a = unhexlify(answer)
        except Exception:
            a = b""
        why = self.auth.unlock(r, a) if r > 0 else "unknown role %r" % (role,)
        if why:
            raise Refused("unlock refused: %s" % why)
        self.con.out.write("%s unlocked for %d s\n" % (ROLE_NAMES[r], self.auth.remaining_s()))

    def lock(self):
        """Drop the unlocked role (back to read-only)."""
        self.auth.lock()
        self.con.out.write("locked: viewer\n")

    def whoami(self):
        """The console's role, time left, failures and lockout."""
        a = self.auth
        self.con.out.write("role %s%s  failed unlocks %d (in a row %d)%s  refused %d\n" % (
            ROLE_NAMES[a.role], (" for %d s" % a.remaining_s()) if a.role else "",
            a.failures, a.fails, "  LOCKED OUT" if a.locked_out() else "", a.refusals))


def _tag(src):
    t = bytearray()
    for c in src:
        if len(t) >= 8:
            break
        if 32 < c < 127:
            t.append(c)
    return t.decode()


def install(console, app, diag=None, key_path="keys.json"):
    """Put the gate in front of ``console`` for ``app`` (charger.ChargerApp);
    ``diag``: its ``diag.commands.Diag`` (board commands get ``BOARD_ROLE``)."""
    from diag import eventlog as ev
    log = app.log

    def note(action, role, text):
        log.log(app.rtc_s(), ev.EV_AUTH, action, role, text)

    key = load_key(getattr(app.board, "keys_path", None) or key_path)
    auth = RoleAuth(key, app.cfg["charger.id"], app.clock.ticks_ms, app.cfg, note)
    g = ConsoleGate(console, auth, app)
    for name in ("challenge", "unlock", "lock", "whoami"):
        console.add(name, getattr(g, name))
    if diag is not None:
        for name, _sig, _text in diag.board_help:
            g.need.setdefault(name, BOARD_ROLE)
    console.gate = g
    return g
