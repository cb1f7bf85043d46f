"""Test doubles shared by the MicroPython unit tests (one place, not a copy
per test file).

``SupervisorBoard`` is the part of the board contract the safety supervisor
drives: it records what actually reached the hardware (the last written or
forced outputs), so a test asserts the contactor / power-stage state a user
would see, not the supervisor's own bookkeeping.  ``MemStore`` is the
lockout store in RAM.  The full in-process board (CAN, inputs, records) is
``apprig.FakeBoard``, built on ``SupervisorBoard``.
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


def live_inputs(inp=None):
    """Measurements of a healthy session delivering current (400 V, 100 A,
    K1/K2 closed): no protection or check has a reason to act."""
    if inp is None:
        from board import Inputs
        inp = Inputs()
    inp.v_inside = 4000
    inp.v_outside = 4000
    inp.i_out = 1000
    inp.cc1_mv = 4000
    inp.insulation_kohm = 5000
    inp.t_gun_pos = 300
    inp.t_gun_neg = 300
    inp.k12_fb = 1
    return inp
