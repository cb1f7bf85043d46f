"""Issue 13, C-1: console roles by HMAC-SHA256 challenge-response.

The real ``ChargerApp`` with its console on an in-memory stream
(``apprig.FakeBoard``), ``console.auth`` at its default (1): read-only until
a role is unlocked with the charger's key; every privileged command refused
without its role; replayed / wrong answers refused, lockout, expiry; every
privileged action in the event log; the supervisor keeps the last word over
maintainer Python."""
import mptest
from mptest import eq, true
from apprig import FakeBoard, tmpdir
from doubles import MemStream
import charger
from diag import eventlog as ev
from security import roles as R
from security.hmac256 import hmac_sha256, equal
from binascii import hexlify, unhexlify

KEY = bytes(range(32))


class ConsoleBoard(FakeBoard):
    def __init__(self, keys_path):
        FakeBoard.__init__(self)
        self.stream = MemStream()
        self.keys_path = keys_path
        self.tel_events = []

    def console_stream(self, cfg):
        return self.stream

    def send_record(self, mv):
        self.records += 1
        from diag import telemetry as T
        if mv[2] == T.T_EVENT:              # header byte 2: the record type
            self.tel_events.append(bytes(mv))


def _rig(name, key=KEY, cfg=None):
    d = tmpdir("sec_" + name)
    tmpdir("sec_" + name + "/state")         # empty: no records of an earlier run
    kp = d + "/keys.json"
    with open(kp, "w") as f:
        f.write('{"console": "%s"}' % hexlify(key).decode() if key else "{}")
    cp = d + "/config.json"
    with open(cp, "w") as f:
        import json
        f.write(json.dumps(cfg or {}))
    b = ConsoleBoard(kp)
    app = charger.ChargerApp(b, cp, console=True, state_dir=d + "/state")
    app._cp = cp
    return b, app


def cmd(b, app, line):
    """Type one friendly-REPL line; return the console's answer (text)."""
    s = b.stream
    s.out = bytearray()
    s.inp.extend(line.encode() + b"\r")
    for _ in range(100):
        app.console.poll(b.clock.ticks_ms())
        if s.pos >= len(s.inp):
            break
    return bytes(s.out).decode()


def raw(b, app, code):
    """Raw REPL exec (what mpremote sends): (stdout, error text)."""
    s = b.stream
    s.inp.extend(b"\x01")
    app.console.poll(0)
    s.out = bytearray()
    s.inp.extend(code.encode() + b"\x04")
    for _ in range(200):
        app.console.poll(b.clock.ticks_ms())
        if s.pos >= len(s.inp):
            break
    o = bytes(s.out)
    s.inp.extend(b"\x02")              # back to the friendly REPL
    app.console.poll(0)
    true(o.startswith(b"OK"), "raw answer %r" % o)
    parts = o[2:].split(b"\x04")
    return parts[0].decode(), parts[1].decode()


def auth_records(app):
    return [(r[5], r[6], r[7]) for r in app.log.recent(200) if r[3] == ev.EV_AUTH]


def unlock(b, app, role, key=KEY, nonce=None):
    t = cmd(b, app, 'challenge("%s")' % role)
    true("nonce" in t, t)
    n = unhexlify(t.split("nonce ")[1].split()[0])
    a = R.response(key, R.role_of(role), app.cfg["charger.id"], nonce or n)
    return cmd(b, app, 'unlock("%s", "%s")' % (role, hexlify(a).decode())), n


def test_c1_hmac_sha256_known_answers_rfc4231():
    # RFC 4231 test cases 1, 2 and 6 (key longer than the block)
    eq(hexlify(hmac_sha256(b"\x0b" * 20, b"Hi There")),
       b"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", "case 1")
    eq(hexlify(hmac_sha256(b"Jefe", b"what do ya want ", b"for nothing?")),
       b"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "case 2")
    eq(hexlify(hmac_sha256(b"\xaa" * 131,
                           b"Test Using Larger Than Block-Size Key - Hash Key First")),
       b"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", "case 6")
    true(equal(b"abc", b"abc") and not equal(b"abc", b"abd") and not equal(b"a", b"ab"), "equal")


def test_c1_viewer_reads_but_every_privileged_command_is_refused():
    b, app = _rig("viewer")
    true("stage" in cmd(b, app, "status()"), "status() works read-only")
    true("role viewer" in cmd(b, app, "whoami()"), "default role")
    sess = app.session
    before = open(app._cp).read()
    for line in ("start()", "stop()", "ack()", "acknowledge()", "rearm()", "reset_estop()",
                 'cfg_set("h8.ma", 1000)', 'cfg_set("risk.level.s6", 0)',
                 "clear_contactor_fault()", "clear_store_fault()"):
        t = cmd(b, app, line)
        true("Refused" in t and "role" in t, "%s refused: %r" % (line, t))
    eq(open(app._cp).read(), before, "config file untouched")
    eq(app.console.gate.refused, 10, "ten refusals counted")
    # Python of any kind: refused, nothing compiled
    for line in ("app.out.k12=1; app.out.pwr_en=1", "import os", "print(app)",
                 "status(); app.halted=None", "exec('app.out.k12=1')", "help(app)"):
        t = cmd(b, app, line)
        true("Refused" in t, "%s refused: %r" % (line, t))
    eq(app.out.k12, 0, "no output written")
    # raw REPL (mpremote exec): refused after the \x04 separator
    out, err = raw(b, app, "import os\nprint(os.listdir())")
    eq(out, "", "no stdout")
    true("Refused" in err and "maintainer" in err, err)
    out, err = raw(b, app, "print(status())")
    true("stage" in out and err == "", "a read-only command works in raw mode: %r %r" % (out, err))
    recs = auth_records(app)
    eq(len([r for r in recs if r[0] == R.AU_REFUSED]), 17, "every refusal logged (10 + 6 + raw 1)")


def test_c1_operator_unlock_allows_operator_commands_only():
    b, app = _rig("operator")
    t, n = unlock(b, app, "operator")
    true("operator unlocked for 900 s" in t, t)
    true("role operator" in cmd(b, app, "whoami()"), "role")
    t = cmd(b, app, "stop()")
    true("Refused" not in t, t)
    t = cmd(b, app, "start()")
    true("Refused" not in t, t)
    t = cmd(b, app, 'cfg_set("h8.ma", 1000)')
    true("Refused" in t and "maintainer" in t, t)
    t = cmd(b, app, "app.out.k12=1")
    true("Refused" in t, t)
    recs = auth_records(app)
    true((R.AU_UNLOCK, R.OPERATOR, "") in recs, "unlock logged: %r" % recs)
    true((R.AU_PRIV, R.OPERATOR, "stop") in recs and (R.AU_PRIV, R.OPERATOR, "start") in recs,
         "privileged commands logged with who/what: %r" % recs)
    # the commands' own records too (EV_OPERATOR)
    ops = [r[5] for r in app.log.recent(200) if r[3] == ev.EV_OPERATOR]
    true(ev.OP_STOP in ops, "operator stop logged")
    # lock() drops it
    cmd(b, app, "lock()")
    true("Refused" in cmd(b, app, "stop()"), "refused after lock()")


def test_c1_operator_key_cannot_answer_a_maintainer_challenge():
    b, app = _rig("rolekey")
    rk = R.role_key(KEY, R.OPERATOR)
    t = cmd(b, app, 'challenge("maintainer")')
    n = unhexlify(t.split("nonce ")[1].split()[0])
    a = R.response(rk, R.MAINTAINER, 1, n, derived=True)
    t = cmd(b, app, 'unlock("maintainer", "%s")' % hexlify(a).decode())
    true("wrong answer" in t, t)


def test_c1_maintainer_python_logged_and_supervisor_keeps_last_word():
    b, app = _rig("maint")
    t, n = unlock(b, app, "maintainer")
    true("maintainer unlocked" in t, t)
    t = cmd(b, app, 'cfg_set("h8.ma", 25)')
    true("Refused" not in t and "stored" in t, t)
    # the attack of the issue: outputs forced from the console in a stage
    # that must not have them; the protection tick overrides them (H-12)
    cmd(b, app, "app.out.k12=1; app.out.pwr_en=1")
    for _ in range(40):
        b.clock.advance_to(b.clock.ms + 5)
        app.run_due()
    eq((b.k12, b.pwr), (0, 0), "the board's contactor and power stage stay off")
    out, err = raw(b, app, "import os\nprint(len(os.listdir('/')) > 0)")
    eq((out.strip(), err), ("True", ""), "raw REPL Python runs for the maintainer")
    recs = auth_records(app)
    ex = [r for r in recs if r[0] == R.AU_EXEC]
    eq(len(ex), 2, "each Python command logged: %r" % recs)
    eq(ex[0][1], R.MAINTAINER, "who")
    eq(ex[1][2], "importos", "what (first bytes)")
    true((R.AU_PRIV, R.MAINTAINER, "cfg_set") in recs, "cfg_set logged")


def test_c1_replay_wrong_answer_lockout_and_expiry():
    b, app = _rig("lockout", cfg={"console.tries": 3, "console.lockout_s": 60,
                                  "console.unlock_s": 30})
    t, n = unlock(b, app, "operator")
    true("unlocked" in t, t)
    cmd(b, app, "lock()")
    # replay: the old answer to the old nonce, after a new challenge
    old = R.response(KEY, R.OPERATOR, 1, n)
    cmd(b, app, 'challenge("operator")')
    t = cmd(b, app, 'unlock("operator", "%s")' % hexlify(old).decode())
    true("wrong answer" in t, "replayed answer refused: %r" % t)
    # the same (right) answer again without a fresh challenge: no pending nonce
    t = cmd(b, app, 'unlock("operator", "%s")' % hexlify(old).decode())
    true("no challenge pending" in t, t)
    # third failure in a row: locked out, even the right answer is refused
    t, _ = unlock(b, app, "operator", nonce=b"\x00" * 16)
    true("wrong answer" in t, t)
    t = cmd(b, app, 'challenge("operator")')
    true("refused" in t, "challenge refused during the lockout: %r" % t)
    recs = auth_records(app)
    true(any(r[0] == R.AU_LOCKOUT for r in recs), "lockout logged")
    # after the lockout: unlock works, and expires after console.unlock_s
    b.clock.advance_to(b.clock.ms + 61000)
    t, _ = unlock(b, app, "operator")
    true("operator unlocked for 30 s" in t, t)
    b.clock.advance_to(b.clock.ms + 30001)
    true("role viewer" in cmd(b, app, "whoami()"), "expired")
    true("Refused" in cmd(b, app, "stop()"), "refused after expiry")
    true(any(r[0] == R.AU_EXPIRE for r in auth_records(app)), "expiry logged")
    # a challenge answered too late is refused
    t = cmd(b, app, 'challenge("operator")')
    nn = unhexlify(t.split("nonce ")[1].split()[0])
    b.clock.advance_to(b.clock.ms + 61000)
    a = R.response(KEY, R.OPERATOR, 1, nn)
    t = cmd(b, app, 'unlock("operator", "%s")' % hexlify(a).decode())
    true("expired" in t, t)


def test_c1_no_key_provisioned_nothing_unlocks_open_console_when_off():
    b, app = _rig("nokey", key=None)
    t = cmd(b, app, 'challenge("maintainer")')
    true("no console key" in t, t)
    true("Refused" in cmd(b, app, "app.halted"), "still read-only")
    b, app = _rig("open", cfg={"console.auth": 0})
    eq(app.console.gate, None, "no gate with console.auth 0")
    true("True" in cmd(b, app, "app.halted is None"), "open console runs Python")



def test_c4_app_logs_intrusion_to_event_log_telemetry_and_console():
    """An intrusion the link notes reaches the event log (EV_INTRUSION), the
    telemetry (an event record) and the console's intrusion() (viewer)."""
    b, app = _rig("ix")
    from gbt import intrusion as X
    cid = (6 << 26) | (0x10 << 16) | (0x56 << 8) | 0x33
    f = app.frame
    f.id = cid
    f.dlc = 8
    b.rxq = [(cid, b"\x00" * 8)]
    b.rx_i = 0
    for _ in range(300):                      # 1.5 s: a slow-task look, a records pass
        b.clock.advance_to(b.clock.ms + 5)
        app.run_due()
    eq(app.link.ix.count[X.IX_FOREIGN], 1, "foreign-sa noted")
    recs = [(r[5], r[6]) for r in app.log.recent(50) if r[3] == ev.EV_INTRUSION]
    eq(recs, [(X.IX_FOREIGN, cid)], "event log")
    t = cmd(b, app, "intrusion()")
    true("foreign-sa 1" in t and "foreign source 1" in t, t)
    import struct
    from diag import telemetry as T
    tel = [struct.unpack_from(T.P_EVENT, r, T.HDR_SIZE) for r in b.tel_events]
    true((ev.EV_INTRUSION, X.IX_FOREIGN, cid) in tel, "telemetry event record: %r" % tel)


mptest.main(globals())
