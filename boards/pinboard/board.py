"""The port-independent pin board: the firmware's ``Board`` contract
(firmware/board.py) on pins, written to the documented ``machine`` API.
Shared by the STM32 (boards/stm32) and ESP32 (boards/esp32) boards, which
add their CAN controller.

``PinBoard``: outputs (``Pin``), set-points (``PWM``), digital and
analogue inputs (``Pin``, ``ADC.read_u16`` scaled with integer math), the
interrupt trip path (``pinboard.fastprot``), the watchdog
(``machine.WDT``, fed from ``idle``, i.e. only by the main loop) and
bus-off recovery.  It talks to CAN through a small adapter object in
``self._can`` (``send/recv/state/counters/restart``), set by the subclass.

Everything the cooperative loop calls per tick (``can_send``, ``can_recv``,
``read_inputs``, ``write_outputs``, ``can_state``, ``can_counters``)
allocates nothing (tests/mp/test_board_stm32.py and test_board_esp32.py
prove it under ``micropython.heap_lock``).  Pin numbers and scaling are
data in each board's pins.py.
"""
import time
import machine
import config
import board as _contract
from rt.clock import TicksClock
from rt.calendar import port_offset
from .fastprot import FastProt

CONFIG_SCHEMA = (
    ("hw.wdt_ms", 1000, 0, 30000, "ms",
     "Watchdog timeout; the main loop feeds it (Board.idle). 0 = no watchdog "
     "(bench work only: a stuck loop is then not reset)"),
    ("hw.can_restart_ms", 200, 0, 60000, "ms",
     "Restart the CAN controller this long after it went bus-off (0 = never)"),
)
config.register(CONFIG_SCHEMA)

ticks_ms = time.ticks_ms
ticks_diff = time.ticks_diff

_G_NONE = 0
_G_PWR = 1      # output forced off while the hard-protection latch is set
_G_K12 = 2      # output forced off once fastprot has opened it


class PinBoard(_contract.Board):
    """Board glue on pins; ``self._can`` is set by the subclass."""

    name = "pins"

    def __init__(self, pins, cfg=None, start_prot=True):
        self.pins = pins
        self.name = pins.NAME
        self.clock = TicksClock()
        # time.time() - this = firmware seconds (EPOCH_2000 on stm32/esp32)
        self._rtc_off = port_offset()
        Pin = machine.Pin
        # Outputs first, and OFF, before anything else can fail.
        self._out = []
        self._outpin = {}
        for attr, pid, on in pins.OUTPUTS:
            on = 1 if on else 0
            p = Pin(pid, Pin.OUT, value=1 - on)
            g = _G_PWR if attr == "pwr_en" else (_G_K12 if attr == "k12" else _G_NONE)
            self._out.append((attr, p, on, g))
            self._outpin[attr] = (p, on)
        self._sp = []
        for attr, pid, freq, mul, div in pins.SETPOINTS:
            pwm = machine.PWM(Pin(pid), freq=freq, duty_u16=0)
            self._sp.append((attr, pwm.duty_u16, mul, div))
        self._din = []
        self._dinpin = {}
        for attr, pid, pull, act in pins.DIGITAL_IN:
            pl = Pin.PULL_UP if pull == "up" else (Pin.PULL_DOWN if pull == "down" else -1)
            p = Pin(pid, Pin.IN, pl)
            self._din.append((attr, p.value, 1 if act else 0))
            self._dinpin[attr] = (p, 1 if act else 0)
        self._ain = []
        self._adc = {}
        atten = getattr(pins, "ADC_ATTEN", None)      # ESP32: input range
        if atten is not None:
            atten = getattr(machine.ADC, atten)
        for attr, pid, mul, div, off in pins.ANALOG:
            if pid is None:
                continue
            if mul <= 0 or div <= 0 or 65535 * mul >= (1 << 30):
                raise ValueError("pins.ANALOG %s: need 0 < mul <= 16383, div > 0" % attr)
            adc = machine.ADC(Pin(pid)) if atten is None else machine.ADC(Pin(pid), atten=atten)
            self._ain.append((attr, adc.read_u16, mul, div, off))
            self._adc[attr] = (adc, (mul, div, off))
        # The interrupt trip path.
        av, vs = self._adc[pins.PROT_V]
        ai, isc = self._adc[pins.PROT_I]
        es = self._dinpin.get(pins.PROT_ESTOP)
        pw = self._outpin["pwr_en"]
        k = self._outpin["k12"]
        bl = self._outpin.get("bleed")
        self.prot = FastProt(av, vs, ai, isc,
                             es[0] if es else None, es[1] if es else 1,
                             pw[0], pw[1], k[0], k[1],
                             bl[0] if bl else None, bl[1] if bl else 1)
        self._rd_i = ai.read_u16
        self._wdt = None
        self._bo = 0
        self._bo_t = 0
        self.can_restarts = 0
        self.notes = self.configure(cfg)
        if start_prot:
            self.prot.start(pins.PROT_TIMER_ID, pins.PROT_HARD)

    def configure(self, cfg):
        """(Re)compute thresholds and timeouts from a configuration dict.

        Call again after the application has loaded and validated the full
        configuration.  Returns notes (strings) worth showing the operator."""
        notes = self.prot.configure(cfg)
        self._wdt_ms = config.get_int(cfg, "hw.wdt_ms")
        self._restart_ms = config.get_int(cfg, "hw.can_restart_ms")
        # force_safe waits for the current at most this long: the contacts
        # must be apart by hw.k_open_deadline_ms (opening time + margin)
        w = (config.get_int(cfg, "hw.k_open_deadline_ms") - config.get_int(cfg, "trip.k_release_ms")
             - config.get_int(cfg, "trip.k_margin_ms"))
        self._k_wait_ms = w if w > 0 else 0
        return notes

    # ------------------------------------------------------------ CAN
    def can_send(self, can_id, buf, n):
        return self._can.send(can_id, buf, n)

    def can_recv(self, frame):
        if self._can.recv(frame):
            frame.ts_ms = self.clock.ticks_ms()
            return True
        return False

    def can_state(self):
        return self._can.state()

    def can_counters(self, out):
        self._can.counters(out)

    def can_restart(self):
        """Leave bus-off (also done automatically by ``idle``)."""
        self.can_restarts += 1
        self._bo = 0
        self._can.restart()

    # ------------------------------------------------------------ IO
    def read_inputs(self, inp):
        for attr, rd, mul, div, off in self._ain:
            setattr(inp, attr, rd() * mul // div + off)
        for attr, rd, act in self._din:
            setattr(inp, attr, 1 if rd() == act else 0)

    def write_outputs(self, out):
        prot = self.prot
        st = machine.disable_irq()      # no trip may slip between check and write
        trip = prot.tripped
        for attr, p, on, g in self._out:
            v = getattr(out, attr)
            if trip and g:
                if g == _G_K12 and prot.k_pending:
                    continue            # the ISR opens K1/K2 when current allows
                v = 0
            p.value(on if v else 1 - on)
        machine.enable_irq(st)
        for attr, duty, mul, div in self._sp:
            v = 0 if trip else getattr(out, attr)
            d = v * mul // div
            duty(0 if d < 0 else (65535 if d > 65535 else d))

    def _set(self, attr, on_):
        e = self._outpin.get(attr)
        if e is not None:
            e[0].value(e[1] if on_ else 1 - e[1])

    def force_safe(self):
        """Fail-safe state, directly on the pins; never raises.

        Power stage off and set-points zero at once; K1/K2 opened when the
        current is below ``hw.k_open_i`` or at the latest
        ``hw.k_open_deadline_ms - trip.k_release_ms - trip.k_margin_ms``
        later (bounded busy wait: the contacts need their opening time),
        then K3/K4 off and the bleeder on.  The lock
        stays as it is (see Outputs.safe)."""
        try:
            self._set("pwr_en", 0)
        except Exception:
            pass
        for e in self._sp:
            try:
                e[1](0)
            except Exception:
                pass
        try:
            t0 = ticks_ms()
            lim = self.prot.i_open
            while self._rd_i() > lim and ticks_diff(ticks_ms(), t0) < self._k_wait_ms:
                pass
        except Exception:
            pass
        for attr, v in (("k12", 0), ("k34", 0), ("bleed", 1)):
            try:
                self._set(attr, v)
            except Exception:
                pass

    # ------------------------------------------------------------ hard trip
    def hw_trip(self):
        """Latched hard-protection cause (fastprot.TRIP_* bits), 0 = none."""
        p = self.prot
        return p.cause if p.tripped else 0

    def hw_trip_reset(self):
        """Operator reset of the hard-protection latch; False if refused."""
        return self.prot.reset()

    # ------------------------------------------------------------ clock
    def rtc_s(self):
        """Board contract: wall-clock seconds since 2020-01-01 00:00 UTC
        (the firmware epoch, ``rt.calendar``).  ``time.time()`` counts from
        2000-01-01 on the stm32 and esp32 ports, so this is it minus 20
        years (631,152,000 s): a small int until 2054, no heap per call;
        negative while the RTC is not set (it restarts at 2000-01-01)."""
        return time.time() - self._rtc_off

    # ------------------------------------------------------------ loop
    def feed_watchdog(self):
        """Start (first call) and feed the watchdog.  Main loop only."""
        w = self._wdt
        if w is None:
            if self._wdt_ms <= 0:
                return
            w = self._wdt = machine.WDT(id=self.pins.WDT_ID, timeout=self._wdt_ms)
        w.feed()

    # console_stream: the Board default, the REPL's serial port (USB VCP /
    # UART), the same stdin/stdout MicroPython's own REPL uses

    def idle(self, until_ms):
        """Feed the watchdog, recover from bus-off, sleep until ``until_ms``.

        The watchdog starts on the first call, i.e. once the main loop is
        demonstrably running (imports and configuration loading before it
        may take longer than the timeout)."""
        self.feed_watchdog()
        self._bus_off_service()
        while ticks_diff(until_ms, ticks_ms()) > 0:
            self._idle_once()

    def _idle_once(self):
        machine.idle()

    def _bus_off_service(self):
        if self._restart_ms <= 0:
            return
        if self._can.state() == _contract.CAN_BUS_OFF:
            now = ticks_ms()
            if not self._bo:
                self._bo = 1
                self._bo_t = now
            elif ticks_diff(now, self._bo_t) >= self._restart_ms:
                self.can_restart()
        else:
            self._bo = 0
