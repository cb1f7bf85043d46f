"""The SIL link's wire format (docs/sil-link.md): the packet type numbers,
the packets the board sends and the packet reader.

``simlink.LinkBoard`` (the board on the link) takes the functions below
``self`` as its methods (``hello``, ``send_text``, ``send_record``,
``send_stats``, ``bye``, ``_handle``), so the wire format is in one place
and the board in another; the per-tick encoders (``frame_out``,
``output``) are machine code: a driver's send is C on a real board, and
the link's cost should not hide the firmware's.
"""
import gc
import struct
import micropython
from micropython import const

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

_EXT_TOP = const(0x80)        # bit 31 of the id field (extended frame), in its top byte


@micropython.viper
def frame_out(ob, o: int, t: int, cid: int, buf, n: int):
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
def output(ob, o: int, t: int, idx: int, val: int):
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


def ack_packet():
    """The ACK packet's buffer (type, length 4, then ``<I t>``, packed per STEP)."""
    ack = bytearray(6)
    ack[0] = T_ACK
    ack[1] = 4
    return ack


# ---- LinkBoard's methods (``self``: the board) -----------------------------------
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


def send_record(self, mv):
    """A telemetry record (P-6, a memoryview of <= 250 bytes) onto the
    SIL telemetry channel; on boards this is a UART."""
    hdr = self.rec_hdr
    hdr[0] = T_TELEMETRY
    hdr[1] = 4 + len(mv)
    struct.pack_into("<I", hdr, 2, self.clock.ticks_ms())
    self._write(self.rec_hdr_mv)
    self._write(mv)


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


# ---- packets from the host ------------------------------------------------------
def handle(self, typ, n):
    """Apply one received packet whose payload is in rbuf[0:n].
    Returns the STEP target for T_STEP, else -1."""
    r = self.rbuf
    if typ == T_FRAME:
        self._enqueue(0)
    elif typ == T_INPUT:
        idx = r[0]
        if idx < len(self.inputs):
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
