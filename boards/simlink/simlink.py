"""The SIL link: a board whose CAN, IO and time come from a host harness.

The wire format (``docs/sil-link.md``; its packets: ``simwire.py``) is
small and fixed so that any program can drive the firmware.  ``LinkBoard``
speaks it over any byte transport; two boards use it:

* ``boards/unix/sil_board.py``: the MicroPython unix port, transport = a TCP
  socket on loopback, lock-step or real time;
* ``boards/qemu/``: the 32-bit Cortex-M target under qemu-system-arm,
  transport = semihosting reads/writes on the emulator's stdin/stdout,
  lock-step only.

A subclass provides the transport: ``_recv(off, n)`` (read at most ``n``
bytes into ``self.rbuf[off:]``, return the count, 0 = link closed) and
``_send(buf, n)`` (write ``buf[0:n]`` completely).

Lock-step: time is ``SimClock``; the harness sends STEP(target_ms) and the
board runs every scheduler pass that falls due up to ``target_ms``, then
answers ACK.  Deterministic: same inputs, same bytes, same times.
"""
import gc
import struct
import time
import micropython
from array import array
from micropython import const
from board import Board, CAN_ERROR_ACTIVE
from rt.clock import SimClock, ticks_diff
from rt.calendar import from_unix
import simwire as _wire
from simwire import frame_out as _frame_out, output as _output
from gbt.transport import _copy   # the firmware's machine-code byte copy (one copy of it)

_INJECT_INPUTS = const(2)  # INJECT code: read_inputs raises from now on
_RXQ = const(64)          # CAN receive FIFO depth (frames)
# The FIFO, ``_q`` (int32 words): head, length, frames received, overruns,
# then 4 words per slot: id, dlc, data bytes 0-3, data bytes 4-7.
_Q_HEAD = const(0)
_Q_LEN = const(1)
_Q_RX = const(2)
_Q_OVR = const(3)
_Q_SLOTS = const(4)
_N_IN = const(12)
_N_OUT = const(7)
_OBUF = const(1024)         # output buffer: one write per STEP; the largest packet (TEXT) is 262 B


@micropython.viper
def _copy_in(inp, v):
    """The measurements into ``inp`` (board.INPUT_NAMES order), every
    protection tick: machine code, and no Python frame (a frame of more
    than 11 words comes from the heap)."""
    inp.v_inside = v[0]
    inp.v_outside = v[1]
    inp.i_out = v[2]
    inp.cc1_mv = v[3]
    inp.insulation_kohm = v[4]
    inp.t_gun_pos = v[5]
    inp.t_gun_neg = v[6]
    inp.estop = v[7]
    inp.k12_fb = v[8]
    inp.lock_fb = v[9]
    inp.leakage_ma = v[10]
    inp.mains_ok = v[11]


@micropython.viper
def _changed(out, sent) -> int:
    """Bit i set: output i (OUTPUT_NAMES order) differs from ``sent[i]``,
    the value last sent to the harness (compared as objects, as ``!=``)."""
    m = 0
    if out.k12 != sent[0]:
        m |= 1
    if out.k34 != sent[1]:
        m |= 2
    if out.lock != sent[2]:
        m |= 4
    if out.bleed != sent[3]:
        m |= 8
    if out.pwr_en != sent[4]:
        m |= 16
    if out.v_set != sent[5]:
        m |= 32
    if out.i_set != sent[6]:
        m |= 64
    return m


@micropython.viper
def _push(q, r, off: int):
    """Append the FRAME payload at r[off] (<I id> <B dlc> <8 data>) to the
    FIFO ``q`` (see _Q_*), or count an overrun if it is full."""
    w = ptr32(q)
    b = ptr8(q)
    p = ptr8(r)
    n = w[_Q_LEN]
    if n >= _RXQ:
        w[_Q_OVR] += 1
        return
    t = (w[_Q_HEAD] + n) & (_RXQ - 1)
    s = _Q_SLOTS + (t << 2)
    w[s] = p[off] | (p[off + 1] << 8) | (p[off + 2] << 16) | ((p[off + 3] & 0x1F) << 24)
    dlc = p[off + 4]
    w[s + 1] = dlc if dlc <= 8 else 8
    o = (s + 2) << 2
    i = 0
    while i < 8:
        b[o + i] = p[off + 5 + i]
        i += 1
    w[_Q_LEN] = n + 1
    w[_Q_RX] += 1


class LinkBoard(Board):
    name = "link"
    # the packets it sends and reads (the wire format: simwire.py)
    hello = _wire.hello
    send_text = _wire.send_text
    send_record = _wire.send_record
    send_stats = _wire.send_stats
    bye = _wire.bye
    _handle = _wire.handle

    def __init__(self, lockstep=True, epoch_s=1767225600, clock=None):
        self.lockstep = lockstep
        # The simulated date at t = 0: the harness's ``epoch_s`` is Unix
        # seconds (2026-01-01 UTC by default), converted once here to the
        # firmware epoch (2020-01-01, ``rt.calendar``), so ``rtc_s`` stays a
        # small int on a 32-bit port (Unix time is above 2**30).
        self.epoch_s = epoch_s
        self.rtc0 = from_unix(epoch_s)
        self.clock = clock if clock is not None else SimClock()
        self.rbuf = bytearray(260)
        self.rmv = memoryview(self.rbuf)
        self.obuf = bytearray(_OBUF)
        self.olen = 0
        # CAN receive FIFO (preallocated ring, see _Q_*)
        self._q = array("i", [0] * (_Q_SLOTS + 4 * _RXQ))
        self.rx_frames = 0         # copies of the FIFO's counters (no
        self.rx_overruns = 0       # properties: see _enqueue)
        self.tx_frames = 0
        self.tx_fail = 0
        self.state = CAN_ERROR_ACTIVE
        self.inputs = [0] * _N_IN
        self.inputs[3] = 12000     # cc1: unplugged
        self.inputs[4] = -1        # no insulation reading
        self.inputs[5] = 250
        self.inputs[6] = 250
        self.inputs[11] = 1        # mains ok
        self.sent_out = [-99999] * _N_OUT
        self.stop = False
        self.app = None
        self.inject = 0
        self.last_type = 0
        self.ack = _wire.ack_packet()
        self.rec_hdr = bytearray(6)
        self.rec_hdr_mv = memoryview(self.rec_hdr)
        self._stb = bytearray(64)  # STATS packets (send_stats)
        self._stnames = []
        # Firmware CPU spent in scheduler passes (sched.next_due + run_due),
        # ``time.ticks_us`` microseconds modulo 2**30 (on the QEMU target
        # these are thousands of guest instructions); read with STATS.
        self.loop_us = 0
        self.stats_req = -1       # flags of a pending STATS request
        self.heap_watch = False   # STATS_HEAP_WATCH: track the heap high-water mark
        self.heap_peak = 0
        self._st_rx = 0           # rx_frames / rx_overruns at the last STATS reset
        self._st_ovr = 0
        # lock-step: frames are stamped with the simulated ms (``clock.ms``)
        self._sim_ms = lockstep and hasattr(self.clock, "ms")
        # The app reads ``board.rtc_s`` once a second: as an
        # instance attribute the bound method is made once, here, instead
        # of on every read (32 bytes of heap each).
        self.rtc_s = self._rtc_s

    def _rtc_s(self):
        """Wall-clock seconds since 2020-01-01 UTC: the simulated date."""
        return self.rtc0 + self.clock.ms // 1000

    # ---- transport (subclass) --------------------------------------------
    def _recv(self, off, n):
        raise NotImplementedError

    def _send(self, buf, n):
        raise NotImplementedError

    # ---- link primitives -------------------------------------------------
    def _write(self, mv):
        """Queue a packet; everything goes out in one write per step (the
        link is not the product, its cost should not hide the firmware's:
        one machine-code copy, like a UART driver's)."""
        n = len(mv)
        if self.olen + n > _OBUF:
            self.flush()
        o = self.olen
        _copy(self.obuf, o, mv, 0, n)
        self.olen = o + n

    def _write_n(self, buf, n):
        """Queue ``buf[0:n]`` (no memoryview slice: nothing allocated)."""
        if self.olen + n > _OBUF:
            self.flush()
        ob = self.obuf
        o = self.olen
        for i in range(n):
            ob[o + i] = buf[i]
        self.olen = o + n

    def _reserve(self, n):
        if self.olen + n > _OBUF:
            self.flush()
        o = self.olen
        self.olen = o + n
        return o

    def flush(self):
        if self.olen:
            self._send(self.obuf, self.olen)
        self.olen = 0

    def _read_exact(self, n):
        got = 0
        while got < n:
            r = self._recv(got, n - got)
            if not r:
                raise OSError("SIL link closed")
            got += r

    def record_sink(self, cfg, state_dir):
        """Board contract: telemetry goes to the harness, not to a file."""
        return self.send_record

    # ---- Board: CAN ---------------------------------------------------------
    @micropython.viper
    def can_send(self, can_id: int, buf, n: int) -> bool:
        """Queue a FRAME_OUT (a CAN driver's send is C: machine code here,
        not byte by byte in bytecode)."""
        if int(self.state) >= 3:     # bus-off / stopped: nothing leaves
            self.tx_fail = int(self.tx_fail) + 1
            return False
        o = int(self._reserve(19))
        _frame_out(self.obuf, o, int(self.clock.ticks_ms()), can_id, buf, n)
        self.tx_frames = int(self.tx_frames) + 1
        return True

    @micropython.viper
    def can_recv(self, frame) -> bool:
        """Pop one frame (a C driver's ``recv``: machine code, no bytecode
        per byte; ~1,200 target instructions with the call)."""
        qo = self._q
        q = ptr32(qo)
        n = q[_Q_LEN]
        if n == 0:
            return False
        h = q[_Q_HEAD]
        s = _Q_SLOTS + (h << 2)
        frame.id = q[s]
        frame.dlc = q[s + 1]
        d = ptr8(frame.data)
        b = ptr8(qo)
        o = (s + 2) << 2
        i = 0
        while i < 8:
            d[i] = b[o + i]
            i += 1
        if self._sim_ms:
            frame.ts_ms = self.clock.ms
        else:
            frame.ts_ms = self.clock.ticks_ms()
        q[_Q_HEAD] = (h + 1) & (_RXQ - 1)
        q[_Q_LEN] = n - 1
        return True

    def can_state(self):
        return self.state

    def can_counters(self, out):
        out[0] = 0
        out[1] = 0
        out[2] = self.tx_frames
        q = self._q
        out[3] = q[_Q_RX]
        out[4] = q[_Q_OVR]

    def _enqueue(self, off):
        # payload at rbuf[off]: <I id> <B dlc> <8 data>
        if self.state >= 3:
            return
        q = self._q
        _push(q, self.rbuf, off)
        # plain attributes, not properties: a property on the board's class
        # would make every attribute store on it (olen, tx_frames ...) look
        # through the class hierarchy first (~1 kinstr each on the target)
        self.rx_frames = q[_Q_RX]
        self.rx_overruns = q[_Q_OVR]

    # ---- Board: IO ----------------------------------------------------------
    def read_inputs(self, inp):
        if self.inject == _INJECT_INPUTS:
            # test hook: a measurement driver that fails on every read, i.e.
            # an exception inside the protection task (H-9)
            raise OSError("injected: input driver fault (test hook)")
        _copy_in(inp, self.inputs)

    def _out(self, idx, val):
        if self.sent_out[idx] == val:
            return
        self.sent_out[idx] = val
        o = self._reserve(11)
        # (machine code, and a frame within the 11 words a bytecode call
        # keeps on the C stack: this runs whenever a set-point moves)
        _output(self.obuf, o, self.clock.ticks_ms(), idx, val)

    def write_outputs(self, out):
        # Called every protection tick; nearly always nothing changed: the
        # comparison is machine code (``_changed``), ``_out`` runs only for
        # the outputs that differ from what was last sent.
        m = _changed(out, self.sent_out)
        if m:
            if m & 1:
                self._out(0, out.k12)
            if m & 2:
                self._out(1, out.k34)
            if m & 4:
                self._out(2, out.lock)
            if m & 8:
                self._out(3, out.bleed)
            if m & 16:
                self._out(4, out.pwr_en)
            if m & 32:
                self._out(5, out.v_set)
            if m & 64:
                self._out(6, out.i_set)

    def force_safe(self):
        self._out(4, 0)
        self._out(5, 0)
        self._out(6, 0)
        self._out(0, 0)
        self._out(1, 0)
        self._out(3, 1)

    # ---- packet handling ----------------------------------------------------
    def _read_packet(self):
        self._read_exact(2)
        typ = self.rbuf[0]
        n = self.rbuf[1]
        if n:
            self._read_exact(n)
        self.last_type = typ
        return n

    def run(self, app):
        """The board's main loop in lock-step: the harness owns time."""
        self.app = app
        self._run_lockstep(app)

    def _run_lockstep(self, app):
        clock = self.clock
        sched = app.sched
        ack = self.ack
        ack_mv = memoryview(ack)
        cpu_us = time.ticks_us
        self.app = app
        while not self.stop:
            n = self._read_packet()
            target = self._handle(self.last_type, n)
            if self.stats_req >= 0:
                self.send_stats(self.stats_req)
                self.stats_req = -1
            if target < 0:
                continue
            t0 = cpu_us()
            while True:
                nd = sched.next_ms          # sched.next_due(), without the call
                if nd is None:
                    nd = sched.next_due()
                if ticks_diff(nd, target) > 0:
                    break
                if nd > clock.ms:           # clock.advance_to(nd), inline
                    clock.ms = nd
                app.run_due(clock.ms)
                if self.stop:
                    break
            self.loop_us = (self.loop_us + ticks_diff(cpu_us(), t0)) & 0x3FFFFFFF
            clock.advance_to(target)
            if self.heap_watch:
                a = gc.mem_alloc()
                if a > self.heap_peak:
                    self.heap_peak = a
            struct.pack_into("<I", ack, 2, clock.ms)
            self._write(ack_mv)
            self.flush()
        app.shutdown("host stop")
