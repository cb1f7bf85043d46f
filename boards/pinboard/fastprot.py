"""Hard protections H-1/H-2/H-3 in interrupt context (the "fast trip path").

The cooperative loop also checks these conditions every control tick, but a
loop can stall (a long GC, a console command, a bug).  This module runs the
three checks from a periodic ``machine.Timer`` interrupt (and the E-stop
also from a pin interrupt), so the output is cut even if the loop is stuck:

- H-1 output over-voltage: ``v_inside`` > ``h1.permille`` of ``rating.max_v``
- H-2 output over-current: ``i_out`` > ``h2.permille`` of ``rating.max_i``

(the same settings as the software checks in firmware/safety/protections.py,
so one number per requirement; the software check also looks at
``v_outside`` and ``abs(i_out)``, this path at the power-stage side only)
- H-3 emergency stop input active.

On a trip, in the same interrupt: the power-stage enable pin goes off
(action time = one timer period, which meets H-1's 10 ms).  The DC
contactors K1/K2 are opened directly only once the output current is below
``hw.k_open_i`` (opening a contactor under load burns its contacts);
otherwise ``k_pending`` is set and each following period re-checks the
current, commanding K1/K2 open at the latest so that the *contacts* are
apart ``hw.k_open_deadline_ms`` after the cause (NB/T 33008.1 clause 5.4.7
measures the contacts: K1/K2 open within 100 ms): the command leaves the
contactor its opening time ``trip.k_release_ms`` and the margin
``trip.k_margin_ms`` (the same settings as the software trip path).  The
deadline is counted in interrupt periods, one period is reserved for the
detection latency: ``deadline_ticks = (deadline_ms - k_release_ms -
k_margin_ms) // period_ms - 1`` (defaults: 74 periods of 1 ms).  The bleeder is
switched on together with the contactor opening.

Interrupt-context rules (hard IRQ: no heap at all): thresholds are
precomputed as raw ADC counts by ``configure`` so the ISR only compares
small ints; no floats, no allocation, no exceptions, every attribute the ISR
writes exists from ``__init__`` on, bound methods are cached once.  The
trip is latched (``tripped`` / ``cause``); only ``reset()`` clears it, and
only when no condition is present any more.

Scaling convention (shared with the boards' pin maps): a raw 16-bit ADC
count ``raw`` means ``raw * mul // div + off`` in firmware units, with
``mul`` > 0 and ``div`` > 0.
"""
from micropython import const
import machine
import config

CONFIG_SCHEMA = (
    ("hw.prot_period_ms", 1, 1, 10, "ms",
     "Period of the hard-protection timer interrupt (H-1/H-2/H-3)"),
    ("hw.k_open_i", 50, 0, 2000, "0.1 A",
     "After a trip, K1/K2 open as soon as the output current is below this"),
    ("hw.k_open_deadline_ms", 100, 0, 100, "ms",
     "After a trip, K1/K2 contacts apart at the latest this long after the cause, "
     "whatever the current (NB/T 33008.1 5.4.7: 100 ms); the command goes "
     "trip.k_release_ms + trip.k_margin_ms earlier"),
)
config.register(CONFIG_SCHEMA)

# h1/h2.permille and trip.k_release_ms / k_margin_ms are declared (and
# documented) by these modules: imported for their schemas, so every
# default lives in one place.
import safety.protections  # noqa: F401
import safety.trip  # noqa: F401

TRIP_OV = const(1)
TRIP_OC = const(2)
TRIP_ESTOP = const(4)
TRIP_NAMES = ("over-voltage", "over-current", "e-stop")

_ADC_MAX = const(65535)


def scale(raw, mul, div, off):
    """Raw ADC count -> firmware units (integer math)."""
    return raw * mul // div + off


def raw_max(value_max, mul, div, off):
    """Largest raw count whose scaled value is <= ``value_max`` (-1: none).

    value(raw) <= V  <=>  raw * mul < (V - off + 1) * div."""
    r = ((value_max - off + 1) * div - 1) // mul
    return r if r >= -1 else -1


class FastProt:
    """The interrupt-driven trip path.

    adc_v, adc_i   objects with ``read_u16()`` (output voltage, current)
    v_scale, i_scale  (mul, div, off) of those channels
    estop          input Pin or None; ``estop_active`` its pressed level
    pwr            power-stage enable Pin, ``pwr_on`` its enabling level
    k12            K1/K2 drive Pin, ``k12_on`` its closing level
    bleed          bleeder Pin or None, ``bleed_on`` its active level
    """

    def __init__(self, adc_v, v_scale, adc_i, i_scale, estop, estop_active,
                 pwr, pwr_on, k12, k12_on, bleed=None, bleed_on=1):
        self._rd_v = adc_v.read_u16          # cached bound methods (ISR)
        self._rd_i = adc_i.read_u16
        self.v_scale = v_scale
        self.i_scale = i_scale
        self._estop = estop
        self._estop_lv = 1 if estop_active else 0
        self._pwr = pwr
        self._pwr_off = 0 if pwr_on else 1
        self._k12 = k12
        self._k12_off = 0 if k12_on else 1
        self._bleed = bleed
        self._bleed_on = 1 if bleed_on else 0
        # thresholds (raw counts); "trip on anything" until configure() runs
        self.v_thr = -1
        self.i_thr = -1
        self.i_open = _ADC_MAX
        self.period_ms = 1
        self.deadline_ticks = 0
        self.notes = []
        # latched state, read by the main loop
        self.tripped = 0
        self.cause = 0
        self.k_pending = 0
        self.k_opened = 0
        self.ticks = 0
        self.trips = 0
        self.isr_runs = 0
        self.last_open_ticks = -1
        self.max_open_ticks = -1
        self.last_v = 0
        self.last_i = 0
        self._timer = None
        self.isr_cb = self.isr                # allocated once, here
        self.estop_cb = self.isr_estop

    # ------------------------------------------------------------ set-up
    def configure(self, cfg):
        """Precompute the raw thresholds from the configuration.

        Returns a list of notes (empty = fine): a threshold the ADC cannot
        represent is clamped so that a saturated reading trips."""
        notes = []
        mv, dv, ov = self.v_scale
        mi, di, oi = self.i_scale
        v_lim = config.get_int(cfg, "rating.max_v") * config.get_int(cfg, "h1.permille") // 1000
        i_lim = config.get_int(cfg, "rating.max_i") * config.get_int(cfg, "h2.permille") // 1000
        v_thr = raw_max(v_lim, mv, dv, ov)
        i_thr = raw_max(i_lim, mi, di, oi)
        if v_thr >= _ADC_MAX:
            notes.append("H-1 limit %d dV is beyond ADC full scale %d dV: "
                         "a saturated reading trips" % (v_lim, scale(_ADC_MAX, mv, dv, ov)))
            v_thr = _ADC_MAX - 1
        if i_thr >= _ADC_MAX:
            notes.append("H-2 limit %d dA is beyond ADC full scale %d dA: "
                         "a saturated reading trips" % (i_lim, scale(_ADC_MAX, mi, di, oi)))
            i_thr = _ADC_MAX - 1
        i_open = raw_max(config.get_int(cfg, "hw.k_open_i") - 1, mi, di, oi)
        period = config.get_int(cfg, "hw.prot_period_ms")
        ticks = (config.get_int(cfg, "hw.k_open_deadline_ms") - config.get_int(cfg, "trip.k_release_ms")
                 - config.get_int(cfg, "trip.k_margin_ms")) // period - 1
        st = machine.disable_irq()
        self.v_thr = v_thr
        self.i_thr = i_thr
        self.i_open = i_open
        self.period_ms = period
        self.deadline_ticks = ticks if ticks > 0 else 0
        machine.enable_irq(st)
        self.v_limit = v_lim
        self.i_limit = i_lim
        self.notes = notes
        return notes

    def start(self, timer_id=-1, hard=True):
        """Start the periodic interrupt and the E-stop pin interrupt."""
        if self._estop is not None:
            trig = machine.Pin.IRQ_RISING if self._estop_lv else machine.Pin.IRQ_FALLING
            self._estop.irq(handler=self.estop_cb, trigger=trig, hard=hard)
        self._timer = machine.Timer(timer_id, mode=machine.Timer.PERIODIC,
                                    period=self.period_ms, callback=self.isr_cb,
                                    hard=hard)
        return self._timer

    def stop(self):
        if self._timer is not None:
            self._timer.deinit()
            self._timer = None
        if self._estop is not None:
            self._estop.irq(handler=None)

    # ------------------------------------------------------------ ISR
    def isr(self, _t):
        """Timer interrupt: sample, compare, cut.  No heap, no floats."""
        self.isr_runs += 1
        v = self._rd_v()
        i = self._rd_i()
        self.last_v = v
        self.last_i = i
        c = 0
        if v > self.v_thr:
            c = TRIP_OV
        if i > self.i_thr:
            c |= TRIP_OC
        e = self._estop
        if e is not None and e.value() == self._estop_lv:
            c |= TRIP_ESTOP
        if c:
            self.cause |= c
            if not self.tripped:
                self._cut(i, 1)
                return
        if self.tripped:
            self._pwr.value(self._pwr_off)   # hold it off, whatever the loop did
            if self.k_pending:
                self.ticks += 1
                if i <= self.i_open or self.ticks >= self.deadline_ticks:
                    self._open()

    def isr_estop(self, _pin):
        """E-stop pin interrupt: cut at once; the current is not sampled here
        (ADC reads are not allowed in every port's pin IRQ), so K1/K2 are left
        to the next timer period."""
        if self._estop.value() != self._estop_lv:
            return                       # bounce back to released: ignore
        self.cause |= TRIP_ESTOP
        if not self.tripped:
            self._cut(0, 0)

    def _cut(self, i, sampled):
        self._pwr.value(self._pwr_off)
        self.tripped = 1
        self.trips += 1
        self.ticks = 0
        self.k_opened = 0
        if sampled and i <= self.i_open:
            self._open()
        else:
            self.k_pending = 1

    def _open(self):
        self._k12.value(self._k12_off)
        if self._bleed is not None:
            self._bleed.value(self._bleed_on)
        self.k_pending = 0
        self.k_opened = 1
        self.last_open_ticks = self.ticks
        if self.ticks > self.max_open_ticks:
            self.max_open_ticks = self.ticks

    # ------------------------------------------------------------ main loop
    def present(self):
        """The causes present right now (fresh samples), as TRIP_* bits."""
        c = 0
        if self._rd_v() > self.v_thr:
            c = TRIP_OV
        if self._rd_i() > self.i_thr:
            c |= TRIP_OC
        e = self._estop
        if e is not None and e.value() == self._estop_lv:
            c |= TRIP_ESTOP
        return c

    def reset(self):
        """Operator reset of the latch.  Refused (False) while a cause is
        present or K1/K2 have not been opened yet."""
        st = machine.disable_irq()
        ok = self.present() == 0 and not self.k_pending
        if ok:
            self.tripped = 0
            self.cause = 0
            self.k_opened = 0
            self.ticks = 0
        machine.enable_irq(st)
        return ok
