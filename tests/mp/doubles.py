"""Test doubles shared by the MicroPython unit tests (one place, not a copy
per test file).

``SupervisorBoard`` is the part of the board contract the safety supervisor
drives: it records what actually reached the hardware (the last written or
forced outputs), so a test asserts the contactor / power-stage state a user
would see, not the supervisor's own bookkeeping.  ``MemStore`` is the
lockout store in RAM.  The full in-process board (CAN, inputs, records) is
``apprig.FakeBoard``, built on ``SupervisorBoard``.  ``RamBdev`` is the
board's flash in RAM (littlefs), able to lose power mid-write;
``FakeModule`` stands in for a module in ``sys.modules`` (a board's
``main.py`` starting a fake charger); ``supervise`` runs the supervisor's
ticks as the app's task table does; ``contract_passes`` runs a board's
per-tick calls under ``micropython.heap_lock()``; ``lockstep`` the SIL
board's lock-step loop; ``live_inputs`` / ``charging_bms`` what a healthy
charge measures and what its BMS reports; ``tmpdir`` an empty state
directory.
"""


from board import Board


class SupervisorBoard(Board):
    """What reached the hardware: the last written / forced outputs (a
    ``board.Board``, so every hook the app calls has the contract's default)."""

    name = "fake"

    def __init__(self, bleed=1):
        self.k12 = 0
        self.k34 = 0
        self.pwr = 0
        self.i_set = 0
        self.bleed = bleed
        self.forced = 0
        self.writes = 0

    def write_outputs(self, out):
        self.writes += 1
        self.k12 = out.k12
        self.k34 = out.k34
        self.pwr = out.pwr_en
        self.i_set = out.i_set
        self.bleed = out.bleed

    def force_safe(self):
        self.forced += 1
        self.k12 = 0
        self.k34 = 0
        self.pwr = 0
        self.i_set = 0
        self.bleed = 1

    def read_inputs(self, inp):
        pass


class MemStore:
    """Lockout / settings store in RAM: ``load`` returns (payload, notes)."""

    def __init__(self):
        self.data = None

    def load(self):
        return self.data, []

    def save(self, p):
        self.data = bytes(p)
        return True


def can_frame(cid, payload):
    """A received ``CanFrame`` holding ``payload`` (what the board's
    ``can_recv`` fills in)."""
    from board import CanFrame
    f = CanFrame()
    f.id = cid
    f.dlc = len(payload)
    for k in range(len(payload)):
        f.data[k] = payload[k]
    return f


class LinkRecorder:
    """The two callbacks a ``BmsLink`` is given: the message handler (calls
    recorded as (now, pgn, status)) and the CAN send (frames recorded as
    (can_id, bytes))."""

    def __init__(self, link=None):
        self.calls = []
        self.sent = []
        self.link = link

    def handler(self, now, pgn, st):
        self.calls.append((now, pgn, st))

    def send(self, cid, buf, n):
        self.sent.append((cid, bytes(buf[:n])))
        return True


def recorded_link(cfg=None):
    """A ``BmsLink`` wired to a ``LinkRecorder``: returns (recorder, BmsData,
    link)."""
    from gbt.bmsdata import BmsData
    from gbt.link import BmsLink
    r = LinkRecorder()
    bms = BmsData()
    link = BmsLink(r.send, None, bms, cfg or {})
    link.set_handler(r.handler)
    return r, bms, link


class MemStream:
    """A console stream in RAM: ``feed`` what the user types, ``take``
    what the console answered."""

    def __init__(self):
        self.inp = bytearray()
        self.pos = 0
        self.out = bytearray()

    def feed(self, b):
        self.inp.extend(b)

    def readinto(self, buf):
        avail = len(self.inp) - self.pos
        if avail <= 0:
            return 0
        n = len(buf) if len(buf) < avail else avail
        for i in range(n):
            buf[i] = self.inp[self.pos + i]
        self.pos += n
        return n

    def write(self, b):
        self.out.extend(b)
        return len(b)

    def take(self):
        o = bytes(self.out)
        self.out = bytearray()
        return o


def live_inputs(inp=None, i_out=1000, t_gun=300):
    """Measurements of a healthy session delivering current (400 V, ``i_out``
    dA, default 100 A; gun pins at ``t_gun`` 0.1 degC; K1/K2 closed): no
    protection or check has a reason to act."""
    if inp is None:
        from board import Inputs
        inp = Inputs()
    inp.v_inside = 4000
    inp.v_outside = 4000
    inp.i_out = i_out
    inp.cc1_mv = 4000
    inp.insulation_kohm = 5000
    inp.t_gun_pos = t_gun
    inp.t_gun_neg = t_gun
    inp.k12_fb = 1
    return inp


class RamBdev:
    """Block device with the extended interface that can 'lose power' at
    write/erase operation number ``fail_at`` (1-based, counted from
    ``ops = 0``):
      raise  the operation raises OSError, nothing more is applied
      drop   that and every later operation is silently not applied
      torn   half of that operation is applied, the rest dropped"""

    def __init__(self, nblocks=24, bs=512, image=None):
        self.bs = bs
        self.n = nblocks
        if image is not None:
            self.data = bytearray(image)
        else:
            self.data = bytearray(b"\xff" * (nblocks * bs))
        self.ops = 0
        self.fail_at = 0
        self.mode = "raise"
        self.dead = False

    def _gate(self):
        self.ops += 1
        if self.dead:
            return 0
        if self.fail_at and self.ops >= self.fail_at:
            self.dead = True
            if self.mode == "raise":
                raise OSError(5)
            return 2 if self.mode == "torn" else 0
        return 1

    def readblocks(self, blk, buf, off=0):
        a = blk * self.bs + off
        try:
            buf[:] = memoryview(self.data)[a:a + len(buf)]
        except MemoryError:
            # called from a GC finaliser (heap locked) closing a file the
            # 'power loss' left open: copy without allocating
            d = self.data
            for i in range(len(buf)):
                buf[i] = d[a + i]

    def writeblocks(self, blk, buf, off=None):
        if off is None:
            off = 0
        g = self._gate()
        if not g:
            return
        a = blk * self.bs + off
        n = len(buf) if g == 1 else len(buf) // 2
        d = self.data
        for i in range(n):      # no allocation: may run from a GC finaliser
            d[a + i] = buf[i]

    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return self.bs
        if op == 6:
            g = self._gate()
            if g:
                a = arg * self.bs
                n = self.bs if g == 1 else self.bs // 2
                for i in range(n):
                    self.data[a + i] = 0xFF
            return 0
        return 0


class FakeModule:
    """A module stand-in in ``sys.modules`` while a ``with`` block runs
    (``with FakeModule("charger", main=fn): ...``)."""

    def __init__(self, name, **attrs):
        self.__name = name
        for k in attrs:
            setattr(self, k, attrs[k])

    def __enter__(self):
        import sys
        sys.modules[self.__name] = self
        return self

    def __exit__(self, *exc):
        import sys
        del sys.modules[self.__name]
        return False


def supervise(sup, t0, t1, hook=None, step=2):
    """The supervisor's ticks from ``t0`` to before ``t1`` as the app's task
    table runs them: ``protect_tick`` every ``step`` ms, ``check_tick`` on
    every 100 ms; ``hook(t)`` first in every step (the plant, the BMS).
    Returns the next ``t``.  Allocates nothing itself."""
    t = t0
    while t < t1:
        if hook is not None:
            hook(t)
        sup.protect_tick(t)
        if t % 100 == 0:
            sup.check_tick(t)
        t += step
    return t


def contract_passes(board, n, payload, also=None):
    """``n`` passes of a board's per-tick contract calls (receive, send
    ``payload``, inputs, outputs, bus state, counters, then ``also()``)
    under ``micropython.heap_lock()``: a hot path that allocates raises
    MemoryError here.  Returns the counters the board reported last."""
    import micropython
    from board import CanFrame, Inputs, Outputs
    f = CanFrame()
    inp = Inputs()
    out = Outputs()
    cnt = [0] * 5
    micropython.heap_lock()
    try:
        for _ in range(n):
            board.can_recv(f)
            board.can_send(0x1801F456, payload, 8)
            board.read_inputs(inp)
            board.write_outputs(out)
            board.can_state()
            board.can_counters(cnt)
            if also is not None:
                also()
    finally:
        micropython.heap_unlock()
    return cnt


def tmpdir(name):
    """An empty directory ``/tmp/mp_alloc_<name>`` (made, or emptied)."""
    import os
    d = "/tmp/mp_alloc_" + name
    try:
        os.mkdir(d)
    except OSError:
        pass
    for f in os.listdir(d):
        try:
            os.remove(d + "/" + f)
        except OSError:
            pass
    return d


def lockstep(clock, sched, until, run_due):
    """The SIL board's lock-step loop in miniature: every scheduler pass
    that falls due up to ``until``, each at its own time (``run_due``: the
    app's or the scheduler's, bound before any heap lock), then the clock
    to ``until``.  Allocates nothing itself."""
    while True:
        nd = sched.next_due()
        if nd > until:
            break
        clock.advance_to(nd)
        run_due()
    clock.advance_to(until)


def charging_bms(b, soc=50, max_cell_v=420, cell_min_v=395):
    """What a healthy BMS reports while charging (250 A / 750 V allowed,
    200 A / 410 V asked, CC, 400 V / 200 A measured, cells 4.00 V against
    ``max_cell_v``, the lowest ``cell_min_v``, 30 degC against 55, SOC
    ``soc`` %, 60 kWh) into the ``BmsData`` ``b``: no check has a reason
    to act."""
    b.max_i = 2500
    b.req_i = 2000
    b.max_v = 7500
    b.req_v = 4100
    b.req_mode = 2          # CC
    b.meas_v = 4000
    b.meas_i = 2000
    b.max_cell_v = max_cell_v
    b.cell_max_v = 400
    b.cells.bmv_max_v = 400
    b.cells.cell_min_v = cell_min_v
    b.max_temp = 55
    b.temp_max = 30
    b.cells.bmt_max = 30
    b.soc = soc
    b.bcp_soc = soc * 10
    b.energy = 600          # 60.0 kWh
    return b
