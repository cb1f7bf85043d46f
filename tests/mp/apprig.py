"""The real ``ChargerApp`` (every task) on an in-process fake board whose CAN
is wired to ``bmsscript.ScriptedBms`` (for tests/mp/test_charging_tick_alloc.py
and test_app_failsafe.py; not a test script itself).

``FakeBoard`` records what reached the hardware (``k12``, ``pwr``,
``i_set``, ``k34``, ``bleed`` of the last write or ``force_safe``) and can
be told to fail every input read (``fail_reads``: an exception inside the
protection task)."""
from board import Inputs
from rt.clock import SimClock
from bmsscript import ScriptedBms, Plant
from doubles import SupervisorBoard, lockstep, tmpdir  # noqa: F401  (tmpdir: for the tests)
import charger


class FakeBoard(SupervisorBoard):
    """Board contract in process; nothing in the per-pass methods allocates
    once ``lean`` is set (frames are preassembled tuples, counted only)."""

    def __init__(self):
        SupervisorBoard.__init__(self)
        self.clock = SimClock()
        self.meas = Inputs()          # what the plant measured
        self.rxq = []                 # (can_id, payload) frames for the firmware
        self.rx_i = 0
        self.tx = []                  # (t, can_id, bytes) frames the firmware sent
        self.lean = False
        self.n_tx = 0
        self.n_tx_id = {}
        self.records = 0
        self.texts = []
        self.fail_reads = False
        self.out = None
        # the board contract: seconds since 2020-01-01 UTC (rt.calendar);
        # 2026-01-01 00:00 UTC here
        self.epoch = 189388800
        # a bound method made once and kept in an instance attribute:
        # ``board.rtc_s`` then returns it without allocating
        self.rtc_s = self._rtc

    def _rtc(self):
        return self.epoch + self.clock.ms // 1000

    def can_send(self, cid, buf, n):
        self.n_tx += 1
        if self.lean:
            return True
        self.tx.append((self.clock.ms, cid, bytes(buf[:n])))
        return True

    def can_recv(self, frame):
        q = self.rxq
        i = self.rx_i
        if i >= len(q):
            return False
        f = q[i]
        self.rx_i = i + 1
        cid = f[0]
        p = f[1]
        frame.id = cid
        n = len(p)
        frame.dlc = n
        d = frame.data
        for k in range(n):
            d[k] = p[k]
        frame.ts_ms = self.clock.ms
        return True

    def read_inputs(self, inp):
        if self.fail_reads:
            raise OSError("input driver fault (test)")
        m = self.meas
        inp.v_inside = m.v_inside
        inp.v_outside = m.v_outside
        inp.i_out = m.i_out
        inp.cc1_mv = m.cc1_mv
        inp.insulation_kohm = m.insulation_kohm
        inp.t_gun_pos = m.t_gun_pos
        inp.t_gun_neg = m.t_gun_neg
        inp.estop = m.estop
        inp.k12_fb = m.k12_fb
        inp.lock_fb = m.lock_fb
        inp.leakage_ma = m.leakage_ma
        inp.mains_ok = m.mains_ok

    def write_outputs(self, out):
        self.out = out
        SupervisorBoard.write_outputs(self, out)

    def record_sink(self, cfg, state_dir):
        return self.send_record

    def send_record(self, mv):
        self.records += 1

    def send_text(self, kind, text):
        self.texts.append(kind + " " + text)


class Rig:
    """ChargerApp + fake board + scripted BMS/plant, 10 ms harness steps."""

    def __init__(self, state_dir):
        self.board = b = FakeBoard()
        self.app = charger.ChargerApp(b, "/nonexistent-config.json", state_dir=state_dir)
        self._run_due = self.app.run_due        # bound once
        self.now = 0
        self.plant = Plant()
        self.ev = ScriptedBms(self)
        self.seen = 0

    def step(self):
        """10 ms: plant -> BMS answers the charger's frames -> scheduler passes."""
        b = self.board
        app = self.app
        self.now += 10
        out = app.out
        self.plant.update(out, b.meas)
        m = b.meas
        m.k12_fb = out.k12              # contactor aux follows the coil
        tx = b.tx
        for k in range(self.seen, len(tx)):
            t, cid, data = tx[k]
            self.ev.observe(t, cid, data)
        self.seen = len(tx)
        self.ev.step(self.now)
        b.rxq = self.ev.out
        b.rx_i = 0
        self.ev.out = []
        self._passes(self.now)

    def _passes(self, target):
        lockstep(self.board.clock, self.app.sched, target, self._run_due)

    def stage(self):
        return self.app.session.stage_name()
