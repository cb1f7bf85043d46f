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
# machine.CAN and its bus model: fakecan.py (pyb.CAN shares the model)
from fakecan import CAN, CanCore, CANS as cans  # noqa: E402,F401
