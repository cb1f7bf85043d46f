"""The SIL link: a board whose CAN, IO and time come from a host harness.

The wire format (``docs/sil-link.md``) is small and fixed so that any
program can drive the firmware.  ``LinkBoard`` speaks it over any byte
transport; two boards use it:

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

import micropython
from array import array
from micropython import const
from board import Board, CAN_ERROR_ACTIVE
from rt.clock import SimClock, ticks_diff
from rt.calendar import from_unix

PROTOCOL_VERSION = const(1)

# host -> firmware
T_STEP = const(0x01)
T_FRAME = const(0x02)
T_INPUT = const(0x03)
T_STOP = const(0x04)
T_INJECT = const(0x05)
T_CAN_STATE = const(0x06)
T_STATS = const(0x07)
# firmware -> host
T_HELLO = const(0x80)
T_ACK = const(0x81)
T_FRAME_OUT = const(0x82)
T_OUTPUT = const(0x83)
T_TEXT = const(0x84)
T_TELEMETRY = const(0x85)
T_BYE = const(0x86)
T_STATS_OUT = const(0x87)

# STATS flags
STATS_RESET = const(1)        # reset the statistics after the snapshot
STATS_COLLECT = const(2)      # gc.collect() before reading the heap figures
STATS_HEAP_WATCH = const(4)   # from now on, sample gc.mem_alloc() after every STEP

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
_EXT_TOP = const(0x80)        # bit 31 of the id field (extended frame), in its top byte
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
def _copy(dst, doff: int, src, soff: int, n: int):
    """dst[doff:doff + n] = src[soff:soff + n] (no slice objects)."""
    d = ptr8(dst)
    s = ptr8(src)
    i = 0
    while i < n:
        d[doff + i] = s[soff + i]
        i += 1


@micropython.viper
def _frame_out(ob, o: int, t: int, cid: int, buf, n: int):
    """FRAME_OUT at ob[o]: type, length 17, <I t> <I id | EXT> <B n> <8 data>
    (bytes past ``n`` zero)."""
    b = ptr8(ob)
    d = ptr8(buf)
    b[o] = T_FRAME_OUT
    b[o + 1] = 17
    b[o + 2] = t
    b[o + 3] = t >> 8
    b[o + 4] = t >> 16
    b[o + 5] = t >> 24
    b[o + 6] = cid
    b[o + 7] = cid >> 8
    b[o + 8] = cid >> 16
    b[o + 9] = (cid >> 24) | _EXT_TOP
    b[o + 10] = n
    i = 0
    while i < 8:
        b[o + 11 + i] = d[i] if i < n else 0
        i += 1


@micropython.viper
def _output(ob, o: int, t: int, idx: int, val: int):
    """OUTPUT at ob[o]: type, length 9, <I t> <B idx> <i val>."""
    b = ptr8(ob)
    b[o] = T_OUTPUT
    b[o + 1] = 9
    b[o + 2] = t
    b[o + 3] = t >> 8
    b[o + 4] = t >> 16
    b[o + 5] = t >> 24
    b[o + 6] = idx
    b[o + 7] = val
    b[o + 8] = val >> 8
    b[o + 9] = val >> 16
    b[o + 10] = val >> 24


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
        self.ack = bytearray(6)
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

    def hello(self, name):
        b = bytearray(2 + 6 + len(name))
        b[0] = T_HELLO
        b[1] = 6 + len(name)
        struct.pack_into("<BBI", b, 2, PROTOCOL_VERSION, 0 if self.lockstep else 1,
                         self.clock.ticks_ms())
        b[8:] = name
        self._write(memoryview(b))
        self.flush()

    def send_text(self, kind, text):
        """Event text to the harness (not hot path: allocates)."""
        t = ("%s %s" % (kind, text)).encode()[:250]
        b = bytearray(6 + len(t))
        b[0] = T_TEXT
        b[1] = 4 + len(t)
        struct.pack_into("<I", b, 2, self.clock.ticks_ms())
        b[6:] = t
        self._write(memoryview(b))

    def record_sink(self, cfg, state_dir):
        """Board contract: telemetry goes to the harness, not to a file."""
        return self.send_record

    def send_record(self, mv):
        """A telemetry record (P-6, a memoryview of <= 250 bytes) onto the
        SIL telemetry channel; on boards this is a UART."""
        hdr = self.rec_hdr
        hdr[0] = T_TELEMETRY
        hdr[1] = 4 + len(mv)
        struct.pack_into("<I", hdr, 2, self.clock.ticks_ms())
        self._write(self.rec_hdr_mv)
        self._write(mv)

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
    def _handle(self, typ, n):
        """Apply one received packet whose payload is in rbuf[0:n].
        Returns the STEP target for T_STEP, else -1."""
        r = self.rbuf
        if typ == T_FRAME:
            self._enqueue(0)
        elif typ == T_INPUT:
            idx = r[0]
            if idx < _N_IN:
                # i32 LE; built from a signed top byte so that a value in
                # the small-int range (+-2**30) never passes through a long
                # int on a 32-bit port (no heap)
                top = r[4]
                if top & 0x80:
                    top -= 256
                self.inputs[idx] = r[1] | (r[2] << 8) | (r[3] << 16) | (top << 24)
        elif typ == T_STEP:
            return r[0] | (r[1] << 8) | (r[2] << 16) | ((r[3] & 0x3F) << 24)
        elif typ == T_STOP:
            self.stop = True
        elif typ == T_INJECT:
            self.inject = r[0]
            if self.app is not None:
                self.app.inject_fault = r[0]
        elif typ == T_CAN_STATE:
            self.state = r[0]
        elif typ == T_STATS:
            self.stats_req = r[0] if n else 0
        return -1

    def send_stats(self, flags):
        """Answer STATS: one STATS_OUT packet with the board/scheduler totals
        (index 0xFF) and one per task, then (flags bit 0) reset the
        scheduler statistics and ``loop_us``.  Benchmarks only; it runs
        between passes, so no task is charged, and it allocates nothing
        (buffer and task names made once): the bench asks every simulated
        second, and its garbage used to fill the heap during a charge, in
        which the firmware does not collect -- slowing down every call that
        takes its frame from the heap (docs/performance.md)."""
        if flags & STATS_COLLECT:
            gc.collect()
        if flags & STATS_HEAP_WATCH:
            self.heap_watch = True
        app = self.app
        now = self.clock.ticks_ms()
        b = self._stb
        sched = app.sched if app is not None else None
        b[0] = T_STATS_OUT
        b[1] = 4 + 1 + 10 * 4
        struct.pack_into("<IBIIIIIIIIII", b, 2, now, 0xFF,
                         sched.passes if sched else 0,
                         sched.pass_wcet_us if sched else 0,
                         self.loop_us, gc.mem_alloc(), gc.mem_free(),
                         self.rx_frames - self._st_rx, self.rx_overruns - self._st_ovr,
                         app.rx_backlog_max if app is not None else 0,
                         len(sched.tasks) if sched else 0,
                         self.heap_peak)
        self._write_n(b, 2 + b[1])
        if sched:
            tasks = sched.tasks
            names = self._stnames
            if len(names) != len(tasks):
                names = self._stnames = [t.name.encode()[:16] for t in tasks]
            k = 0
            for t in tasks:
                name = names[k]
                n = len(name)
                b[0] = T_STATS_OUT
                b[1] = 4 + 1 + 7 * 4 + n
                struct.pack_into("<IBIIIIIII", b, 2, now, k, t.runs, t.total_us,
                                 t.wcet_us, t.overruns, t.alloc_bytes, t.alloc_max,
                                 t.late_max_ms)
                for j in range(n):
                    b[35 + j] = name[j]
                self._write_n(b, 2 + b[1])
                k += 1
            if flags & STATS_RESET:
                sched.reset_stats()
        if flags & STATS_RESET:
            self.loop_us = 0
            self.heap_peak = 0
            self._st_rx = self.rx_frames
            self._st_ovr = self.rx_overruns
            if app is not None:
                app.rx_backlog_max = 0
        self.flush()

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
        ack[0] = T_ACK
        ack[1] = 4
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

    def bye(self, code, text):
        t = text.encode()[:200]
        b = bytearray(3 + len(t))
        b[0] = T_BYE
        b[1] = 1 + len(t)
        b[2] = code
        b[3:] = t
        try:
            self._write(memoryview(b))
            self.flush()
        except OSError:
            pass
