"""Fake ``machine`` module for unit tests on the unix port (never deployed).

Follows the documented MicroPython signatures of ``machine.Pin``, ``ADC``,
``PWM``, ``Timer``, ``WDT``, ``SPI`` and ``CAN`` (the 1.28+ class) and
records what was done so that tests can assert it.  Everything a board or
driver calls on its hot path (``Pin.value``, ``ADC.read_u16``,
``SPI.write_readinto``, ``CAN.send``/``recv``, ``disable_irq``) is itself
allocation-free here, so a test can wrap the board's hot path in
``micropython.heap_lock()`` and the fake does not spoil the proof.

Test helpers (not part of MicroPython) are module functions or methods whose
names start with ``t_`` or are listed in the docstrings: ``t_reset()``,
``pin(id)``, ``set_level(id, v)``, ``level(id)``, ``set_adc(id, raw)``,
``watch_pin(id, fn)``, ``attach_spi(id, device)``, ``timers``, ``wdts``,
``cans``.
"""

# ---------------------------------------------------------------- registry
_levels = {}       # pin id -> current logic level (input or output)
_pins = {}         # pin id -> last constructed Pin object
_watch = {}        # pin id -> fn(level), called when the firmware writes it
_adc = {}          # pin id -> raw 16-bit value returned by read_u16
_spi_dev = {}      # SPI id -> device object with select(level) / xfer(byte)
timers = []
wdts = []
cans = []
pwms = {}          # pin id -> PWM
_irq_state = [0, 0]   # [nesting depth, number of disable_irq calls]


def t_reset():
    """Forget every pin, ADC value, timer and device (call at test start)."""
    _levels.clear()
    _pins.clear()
    _watch.clear()
    _adc.clear()
    _spi_dev.clear()
    pwms.clear()
    del timers[:]
    del wdts[:]
    del cans[:]
    _irq_state[0] = 0
    _irq_state[1] = 0
    Pin.seq = 0


def _pid(p):
    return p.id if isinstance(p, Pin) else p


def pin(pid):
    return _pins.get(pid)


def set_level(pid, v):
    """Drive an input pin from outside (fires a configured IRQ on an edge)."""
    old = _levels.get(pid, 0)
    _levels[pid] = v
    p = _pins.get(pid)
    if p is not None and old != v:
        p.t_edge(old, v)


def level(pid):
    return _levels.get(pid)


def set_adc(pid, raw):
    _adc[_pid(pid)] = raw


def watch_pin(pid, fn):
    _watch[pid] = fn


def attach_spi(spi_id, device):
    _spi_dev[spi_id] = device


# ---------------------------------------------------------------- IRQ state
def disable_irq():
    _irq_state[0] += 1
    _irq_state[1] += 1
    return 1


def enable_irq(state=1):
    if _irq_state[0] > 0:
        _irq_state[0] -= 1


def irq_depth():
    return _irq_state[0]


def idle():
    pass


PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


def reset_cause():
    return PWRON_RESET


# --------------------------------------------------------------------- Pin
class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    ALT = 3
    ANALOG = 4
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 1
    IRQ_RISING = 2
    seq = 0            # global write sequence number, to check ordering

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        self.id = id
        self.mode = -1
        self.pull = -1
        self.writes = 0
        self.last_seq = 0
        self.handler = None
        self.trigger = 0
        self.hard = False
        if id not in _levels:
            _levels[id] = 0
        _pins[id] = self
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        if mode != -1:
            self.mode = mode
        if pull != -1:
            self.pull = pull
            if self.mode == Pin.IN and pull == Pin.PULL_UP and self.writes == 0:
                _levels[self.id] = 1      # an open input with pull-up reads 1
        if value is not None:
            self.value(value)

    def value(self, x=None):
        if x is None:
            return _levels[self.id]
        v = 1 if x else 0
        _levels[self.id] = v
        self.writes += 1
        Pin.seq += 1
        self.last_seq = Pin.seq
        w = _watch.get(self.id)
        if w is not None:
            w(v)
        return None

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, *, priority=1, wake=None, hard=False):
        self.handler = handler
        self.trigger = trigger
        self.hard = hard
        return self

    def t_edge(self, old, new):
        if self.handler is None:
            return
        if (new and not old and self.trigger & Pin.IRQ_RISING) or \
                (old and not new and self.trigger & Pin.IRQ_FALLING):
            self.handler(self)


# --------------------------------------------------------------------- ADC
class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 3

    def __init__(self, src, *, atten=None):
        self.id = _pid(src)
        self.atten = atten
        self.reads = 0
        if self.id not in _adc:
            _adc[self.id] = 0

    def read_u16(self):
        self.reads += 1
        return _adc[self.id]


# --------------------------------------------------------------------- PWM
class PWM:
    def __init__(self, dest, *, freq=None, duty_u16=None, duty_ns=None, invert=False):
        self.id = _pid(dest)
        self.f = freq
        self.duty = duty_u16 if duty_u16 is not None else 0
        pwms[self.id] = self

    def freq(self, value=None):
        if value is None:
            return self.f
        self.f = value

    def duty_u16(self, value=None):
        if value is None:
            return self.duty
        if value < 0 or value > 65535:
            raise ValueError("duty out of range")
        self.duty = value

    def deinit(self):
        self.duty = 0


# ------------------------------------------------------------------- Timer
class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, *args, **kwargs):
        self.id = id
        self.mode = None
        self.freq = -1
        self.period = -1
        self.callback = None
        self.hard = True
        self.running = False
        timers.append(self)
        if kwargs:
            self.init(**kwargs)

    def init(self, *, mode=PERIODIC, freq=-1, period=-1, callback=None, hard=True):
        self.mode = mode
        self.freq = freq
        self.period = period
        self.callback = callback
        self.hard = hard
        self.running = True

    def deinit(self):
        self.running = False

    def period_ms(self):
        if self.freq > 0:
            return 1000 // self.freq
        return self.period

    def t_fire(self, n=1):
        """Run the callback ``n`` times, as the hardware would each period."""
        for _ in range(n):
            if self.running:
                self.callback(self)


# --------------------------------------------------------------------- WDT
class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        wdts.append(self)

    def feed(self):
        self.feeds += 1


# --------------------------------------------------------------------- SPI
class SPI:
    MSB = 0
    LSB = 1

    def __init__(self, id, baudrate=1000000, *, polarity=0, phase=0, bits=8,
                 firstbit=MSB, sck=None, mosi=None, miso=None):
        self.id = id
        self.baudrate = baudrate
        self.polarity = polarity
        self.phase = phase
        self.bytes = 0

    def init(self, baudrate=1000000, **kw):
        self.baudrate = baudrate

    def deinit(self):
        pass

    def _xfer(self, b):
        self.bytes += 1
        d = _spi_dev.get(self.id)
        if d is None:
            return 0xFF
        return d.xfer(b)

    def write(self, buf):
        for i in range(len(buf)):
            self._xfer(buf[i])

    def read(self, nbytes, write=0x00):
        out = bytearray(nbytes)
        self.readinto(out, write)
        return bytes(out)

    def readinto(self, buf, write=0x00):
        for i in range(len(buf)):
            buf[i] = self._xfer(write)

    def write_readinto(self, write_buf, read_buf):
        n = len(write_buf)
        if len(read_buf) != n:
            raise ValueError("buffers must be the same length")
        for i in range(n):
            read_buf[i] = self._xfer(write_buf[i])


# --------------------------------------------------------------------- CAN
class CanCore:
    """Bus model shared by the machine.CAN and pyb.CAN fakes.

    Frames sent are logged in a preallocated ring (``t_sent()`` returns them
    as (id, bytes, ext)); ``t_inject`` queues a received frame.  Error
    counters are set with ``t_errors(tec, rec)``; ``t_bus_off()`` drives the
    controller bus-off.  Up to ``tx_slots`` frames may be pending in the
    hardware; they complete at once unless ``hold_tx`` is True (then
    ``t_complete()`` completes them)."""

    RX_DEPTH = 16
    LOG = 64

    def __init__(self):
        self.loopback = False
        self.silent = False
        self.enabled = True
        self.tec = 0
        self.rec = 0
        self.bus_off = False
        self.hold_tx = False
        self.tx_slots = 3
        self.tx_pending = 0
        self.rx_ids = [0] * self.RX_DEPTH
        self.rx_flags = [0] * self.RX_DEPTH
        self.rx_dlc = [0] * self.RX_DEPTH
        self.rx_data = bytearray(8 * self.RX_DEPTH)
        self.rx_head = 0
        self.rx_n = 0
        self.overruns = 0
        self.log_ids = [0] * self.LOG
        self.log_ext = [0] * self.LOG
        self.log_dlc = [0] * self.LOG
        self.log_data = bytearray(8 * self.LOG)
        self.log_n = 0
        self.accept = None      # None = all; else list of (id, mask, ext)
        self._mv = None         # the caller's full memoryview (see _fill)
        self._views = None
        self.restarts = 0
        self.got_id = 0
        self.got_flags = 0

    # -- bus side (test helpers)
    def t_inject(self, can_id, data, ext=True, rtr=False):
        if not self._accepts(can_id, ext):
            return False
        if self.rx_n >= self.RX_DEPTH:
            self.overruns += 1
            return False
        i = (self.rx_head + self.rx_n) % self.RX_DEPTH
        self.rx_ids[i] = can_id
        self.rx_flags[i] = (1 if ext else 0) | (2 if rtr else 0)
        self.rx_dlc[i] = len(data)
        for k in range(len(data)):
            self.rx_data[i * 8 + k] = data[k]
        self.rx_n += 1
        return True

    def t_sent(self):
        out = []
        for i in range(self.log_n):
            j = i % self.LOG
            out.append((self.log_ids[j], bytes(self.log_data[j * 8:j * 8 + self.log_dlc[j]]),
                        self.log_ext[j]))
        return out

    def t_errors(self, tec, rec):
        self.tec = tec
        self.rec = rec
        self.bus_off = tec > 255

    def t_bus_off(self):
        self.t_errors(256, self.rec)

    def t_complete(self):
        self.tx_pending = 0

    def _accepts(self, can_id, ext):
        if self.accept is None:
            return True
        for fid, mask, fext in self.accept:
            if fext == ext and (can_id & mask) == (fid & mask):
                return True
        return False

    # -- controller side (allocation-free)
    def _tx(self, can_id, data, ext):
        n = len(data)
        j = self.log_n % self.LOG
        self.log_ids[j] = can_id
        self.log_ext[j] = 1 if ext else 0
        self.log_dlc[j] = n
        for k in range(n):
            self.log_data[j * 8 + k] = data[k]
        self.log_n += 1
        if self.hold_tx:
            self.tx_pending += 1
        if self.loopback:
            if self.rx_n < self.RX_DEPTH and self._accepts(can_id, ext):
                i = (self.rx_head + self.rx_n) % self.RX_DEPTH
                self.rx_ids[i] = can_id
                self.rx_flags[i] = 1 if ext else 0
                self.rx_dlc[i] = n
                for k in range(n):
                    self.rx_data[i * 8 + k] = data[k]
                self.rx_n += 1

    def _fill(self, lst, idx):
        """Copy the oldest frame into the memoryview at lst[idx].

        MicroPython resizes that memoryview in place; Python code cannot, so
        the fake keeps one view per length over the caller's buffer, built on
        the first call (that first call allocates; later calls do not)."""
        mv = lst[idx]
        if self._views is None or (mv is not self._mv and not self._is_view(mv)):
            self._build(mv)
        i = self.rx_head
        n = self.rx_dlc[i]
        full = self._mv
        for k in range(n):
            full[k] = self.rx_data[i * 8 + k]
        lst[idx] = self._views[n]
        self.got_id = self.rx_ids[i]
        self.got_flags = self.rx_flags[i]
        self.rx_head = (i + 1) % self.RX_DEPTH
        self.rx_n -= 1

    def _build(self, mv):
        # separate function: a comprehension over a local of _fill would turn
        # that local into a heap-allocated closure cell on every call
        self._mv = mv
        self._views = [mv[:k] for k in range(9)]

    def _is_view(self, mv):
        for v in self._views:
            if v is mv:
                return True
        return False

    def _state_level(self):
        """0 active, 1 warning, 2 passive, 3 bus-off."""
        if self.bus_off:
            return 3
        m = self.tec if self.tec > self.rec else self.rec
        if m >= 128:
            return 2
        if m >= 96:
            return 1
        return 0


class CAN:
    """machine.CAN as documented for MicroPython 1.28+ (classic CAN)."""

    MODE_NORMAL = 0
    MODE_SLEEP = 1
    MODE_LOOPBACK = 2
    MODE_SILENT = 3
    MODE_SILENT_LOOPBACK = 4
    STATE_STOPPED = 0
    STATE_ACTIVE = 1
    STATE_WARNING = 2
    STATE_PASSIVE = 3
    STATE_BUS_OFF = 4
    FLAG_RTR = 1
    FLAG_EXT_ID = 2
    FLAG_UNORDERED = 4
    RECV_ERR_FULL = 1
    RECV_ERR_OVERRUN = 2
    IRQ_RX = 1
    IRQ_TX = 2
    IRQ_STATE = 4
    IRQ_TX_FAILED = 8
    IRQ_TX_IDX_SHIFT = 8
    IRQ_TX_IDX_MASK = 3
    TX_QUEUE_LEN = 3
    FILTERS_MAX = 14

    def __init__(self, id, *args, **kwargs):
        self.id = id
        self.core = CanCore()
        self.core.enabled = False
        self.bitrate = 0
        self.mode = None
        self.sample_point = None
        self.filters_set = False
        self._seen_ovr = 0
        cans.append(self)
        if not args and "bitrate" not in kwargs:
            raise TypeError("bitrate required")
        self.init(*args, **kwargs)

    def init(self, bitrate, mode=0, sample_point=75, sjw=1, tseg1=None, tseg2=None):
        self.bitrate = bitrate
        self.mode = mode
        self.sample_point = sample_point
        self.core.loopback = mode in (CAN.MODE_LOOPBACK, CAN.MODE_SILENT_LOOPBACK)
        self.core.enabled = True

    def deinit(self):
        self.core.enabled = False

    def set_filters(self, filters):
        self.filters_set = True
        if filters is None:
            self.core.accept = None
            return
        acc = []
        for f in filters:
            if len(acc) >= CAN.FILTERS_MAX:
                raise ValueError("too many filters")
            acc.append((f[0], f[1], bool(f[2] & CAN.FLAG_EXT_ID)))
        self.core.accept = acc

    def send(self, id, data, flags=0):
        c = self.core
        if not c.enabled or c.bus_off:
            raise OSError(5)
        if len(data) > 8:
            raise ValueError("data too long")
        if c.tx_pending >= c.tx_slots:
            return None
        idx = c.tx_pending
        c._tx(id, data, flags & CAN.FLAG_EXT_ID)
        return idx

    def recv(self, arg=None):
        c = self.core
        if not self.filters_set or c.rx_n == 0:
            return None
        if arg is None:
            arg = [0, memoryview(bytearray(8)), 0, 0]
        c._fill(arg, 1)
        fl = c.got_flags
        arg[0] = c.got_id
        arg[2] = (CAN.FLAG_EXT_ID if fl & 1 else 0) | (CAN.FLAG_RTR if fl & 2 else 0)
        errs = 0
        if c.overruns != self._seen_ovr:
            self._seen_ovr = c.overruns
            errs = CAN.RECV_ERR_OVERRUN
        arg[3] = errs
        return arg

    def state(self):
        c = self.core
        if not c.enabled:
            return CAN.STATE_STOPPED
        lv = c._state_level()
        if lv == 3:
            return CAN.STATE_BUS_OFF
        if lv == 2:
            return CAN.STATE_PASSIVE
        if lv == 1:
            return CAN.STATE_WARNING
        return CAN.STATE_ACTIVE

    def get_counters(self, list=None):
        if list is None:
            list = [0] * 8
        c = self.core
        list[0] = c.tec
        list[1] = c.rec
        list[2] = 0
        list[3] = 0
        list[4] = 0
        list[5] = c.tx_pending
        list[6] = c.rx_n
        list[7] = c.overruns
        return list

    def restart(self):
        c = self.core
        c.bus_off = False
        c.tec = 0
        c.rec = 0
        c.tx_pending = 0
        c.restarts += 1

    def cancel_send(self, index):
        return False

    def irq(self, handler=None, trigger=0, hard=False):
        self.handler = handler
        return self
