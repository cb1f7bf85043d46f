"""Trip path: the level-III shutdown sequence, driven every fast tick.

Requirements section 4 (level III) and gbt27930.md sections 5 and 7:

1. at once: power stage off (``pwr_en = 0``, set-points 0);
2. K1/K2 open as soon as ``|i_out| < trip.i_open_dA`` (5 A) and in every
   case, even if the current is still high (opening under load is better
   than missing the 100 ms limit), when the command is due::

       t_cause + trip.k_open_ms - trip.k_release_ms - trip.k_margin_ms - sched.protect_ms

   NB/T 33008.1 5.4.7 measures the *contacts*: the command must leave the
   contactor its opening time (``k_release_ms``, datasheet maximum) plus a
   margin, and the cause can have happened up to one tick before it was
   first sampled (defaults: 100 - 20 - 5 - 5 = 70 ms after the first
   sample, contacts apart <= 95 ms after the real cause);
3. after K1/K2 are open: bleeder on until ``v_outside < trip.safe_dv``
   (60 V), then bleeder off; if that is not reached within
   ``trip.bleed_max_ms`` the bleeder is switched off anyway (it is not
   rated to discharge a battery whose contactors stayed closed) and
   ``bleed_timeout`` is set.

Timestamps (ticks ms, -1 = not yet) for latency reporting:
``t_cause`` (condition first seen), ``t_pwr_off``, ``t_k12_open``,
``t_safe_v``.  ``apply`` overrides an ``Outputs`` in place, allocates
nothing and returns True when the caller must also call
``board.force_safe()`` (the command deadline passed more than a tick ago:
the fast tick was starved, so the sequence is skipped and everything drops
at once).

While the trip is active the K3/K4 auxiliary supply and the lock are left
to the session: the CST/CSD exchange after a fault needs the BMS powered,
and the lock must stay closed until the voltage is low.
"""
from micropython import const
import config
from rt.clock import ticks_diff
import rt.scheduler  # noqa: F401  (declares sched.protect_ms, the tick the trip path works to)

IDLE = const(0)
POWER_OFF = const(1)   # power stage off, waiting to open K1/K2
BLEED = const(2)       # K1/K2 open, bleeding
SAFE = const(3)        # below safe voltage (or bleed timed out)
STATE_NAMES = ("IDLE", "POWER_OFF", "BLEED", "SAFE")

NA = const(-1)

CONFIG_SCHEMA = (
    ("trip.i_open_dA", 50, 0, 500, "0.1 A", "Open K1/K2 once |i_out| is below this (GB/T 18487.1: 5 A)"),
    ("trip.k_open_ms", 100, 10, 1000, "ms", "K1/K2 contacts open at the latest this long after the cause (NB/T 33008.1 5.4.7 measures the contacts)"),
    ("trip.k_release_ms", 20, 0, 100, "ms", "K1/K2 opening time: coil off to contacts apart (datasheet maximum); the open command goes this much before the deadline"),
    ("trip.k_margin_ms", 5, 0, 100, "ms", "Extra margin before the K1/K2 deadline (coil driver, contactor spread)"),
    ("trip.safe_dv", 600, 0, 600, "0.1 V", "Bleed until v_outside is below this (60 V)"),
    ("trip.bleed_max_ms", 3000, 100, 60000, "ms", "Stop bleeding after this even if not safe (B.4.2 asks < 60 V in 1 s)"),
)
config.register(CONFIG_SCHEMA)


def k_command_ms(c):
    """ms after the first sample of the cause at which K1/K2 are commanded
    open whatever the current (the deadline the trip path works to)."""
    return (config.get(c, "trip.k_open_ms") - config.get(c, "trip.k_release_ms")
            - config.get(c, "trip.k_margin_ms") - config.get(c, "sched.protect_ms"))


def _cross(c):
    tick = config.get(c, "sched.protect_ms")
    if k_command_ms(c) < tick:
        return ("trip.k_open_ms (%d) must exceed trip.k_release_ms + trip.k_margin_ms"
                " + 2 x sched.protect_ms (%d)"
                % (config.get(c, "trip.k_open_ms"), config.get(c, "trip.k_release_ms")
                   + config.get(c, "trip.k_margin_ms") + 2 * tick))
    return None


if _cross not in config.CROSS_CHECKS:
    config.CROSS_CHECKS.append(_cross)


class TripPath:
    def __init__(self, c):
        self.tick = config.get(c, "sched.protect_ms")
        self.i_open = config.get(c, "trip.i_open_dA")
        self.k_max = config.get(c, "trip.k_open_ms")
        # open command due this long after the first sample (see above)
        self.k_cmd = k_command_ms(c)
        self.safe_v = config.get(c, "trip.safe_dv")
        self.bleed_max = config.get(c, "trip.bleed_max_ms")
        self.reset()

    def reset(self):
        self.state = IDLE
        self.cause = 0
        self.k_hold = 0
        self.t_cause = NA
        self.t_pwr_off = NA
        self.t_k12_open = NA
        self.t_safe_v = NA
        self.i_at_open = 0          # |i_out| when K1/K2 were opened (dA)
        self.opened_on_deadline = 0
        self.bleed_timeout = 0
        self.forced = 0

    def start(self, now, cause, t_cause, k_closed):
        """Begin the sequence.  ``k_closed``: K1/K2 command before the trip.
        A second cause while a trip runs is ignored (the first one counts)."""
        if self.state != IDLE:
            return False
        self.cause = cause
        self.t_cause = t_cause
        self.t_pwr_off = now
        self.k_hold = 1 if k_closed else 0
        self.state = POWER_OFF
        return True

    def latency(self, t):
        """ms from the cause to timestamp ``t`` (-1 if not reached)."""
        if t == NA or self.t_cause == NA:
            return NA
        return ticks_diff(t, self.t_cause)

    def apply(self, now, inp, out):
        """Override ``out`` for this tick; True = caller must force_safe()."""
        st = self.state
        if st == IDLE:
            return False
        out.pwr_en = 0
        out.v_set = 0
        out.i_set = 0
        force = False
        if st == POWER_OFF:
            i = inp.i_out
            if i < 0:
                i = -i
            el = ticks_diff(now, self.t_cause)
            if not self.k_hold or i < self.i_open or el >= self.k_cmd:
                if self.k_hold and i >= self.i_open:
                    self.opened_on_deadline = 1
                    if el >= self.k_cmd + self.tick:
                        force = True        # starved: drop everything at once
                        self.forced = 1
                self.i_at_open = i
                self.t_k12_open = now
                st = BLEED
                self.state = BLEED
            else:
                out.k12 = 1                 # hold closed until current is low
                out.bleed = 0
                return False
        out.k12 = 0
        if st == BLEED:
            if inp.v_outside < self.safe_v:
                self.t_safe_v = now
                self.state = SAFE
                out.bleed = 0
            elif ticks_diff(now, self.t_k12_open) >= self.bleed_max:
                self.bleed_timeout = 1
                self.state = SAFE
                out.bleed = 0
            else:
                out.bleed = 1
        else:
            out.bleed = 0
        return force
