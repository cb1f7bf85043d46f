"""The date-time stamped on telemetry records (P-6), apart from the record
producer (diag/telemetry.py).

The RTC gives seconds since the firmware epoch 2020-01-01
(``rt.calendar``).  It is read rarely (``telemetry.rtc_sync_s``; a board's
RTC read may cost more than a tick should); between syncs the date-time is
carried forward from the tick clock.  After a sync request the RTC is read
every tick until its second changes, which puts the sub-second phase within
one tick.  Integer-only and allocation-free (every int below 2**30)."""
from micropython import const

try:
    from time import ticks_diff
except ImportError:           # CPython: the host tools import the layouts
    def ticks_diff(a, b):
        return a - b

_DAY_S = const(86400)
_SEEK_MS = const(2000)        # give up waiting for the RTC second to change
_DAYS_0000_03_01 = const(737730)  # days 0000-03-01 .. 2020-01-01 (rt.calendar)


class RecordClock:
    """rtc: callable -> seconds since 2020-01-01 (negative or None: not set),
    or None (date-time zero).  ``stamp(now)`` sets year..msec."""

    def __init__(self, rtc, sync_ms):
        self.rtc = rtc
        self.sync_ms = sync_ms
        self._rtc_state = 0       # 0 unsynced, 1 seeking the second edge, 2 synced
        self._rtc_edge = 0
        self._seek_ms = 0
        self._valid = False
        self._base_days = 0
        self._base_sod = 0
        self._base_ms = 0
        self._last_sync = 0
        self._day = -1
        self.year = self.month = self.day = 0
        self.hour = self.minute = self.second = self.msec = 0

    def _set_base(self, t, now):
        t = int(t)                # an RTC that answers with a float
        self._base_days = t // _DAY_S
        self._base_sod = t % _DAY_S
        self._base_ms = now
        self._valid = True

    def sync(self, now):
        """Keep the RTC base current; reads the RTC only when needed."""
        st = self._rtc_state
        if st == 2 and ticks_diff(now, self._last_sync) < self.sync_ms:
            return
        t = self.rtc()
        if t is None or t < 0:
            self._valid = False           # no date-time: stamps read 0
            self._rtc_state = 0
            return
        if st == 1:
            if t != self._rtc_edge:
                self._set_base(t, now)    # the second just changed: exact phase
            elif ticks_diff(now, self._seek_ms) < _SEEK_MS:
                return                    # keep looking for the edge
            self._rtc_state = 2           # synced (or an RTC that stands still)
            self._last_sync = now
            return
        if st == 0:
            self._set_base(t, now)        # coarse at once, refined at the edge
        self._rtc_edge = t
        self._seek_ms = now
        self._rtc_state = 1

    def _civil(self, z):
        """Days since 2020-01-01 -> year, month, day (proleptic Gregorian;
        integer-only, so no allocation; ``rt.calendar.civil_days`` in place)."""
        z += _DAYS_0000_03_01
        era = z // 146097
        doe = z - era * 146097
        yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
        doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
        mp = (5 * doy + 2) // 153
        self.day = doy - (153 * mp + 2) // 5 + 1
        self.month = mp + 3 if mp < 10 else mp - 9
        self.year = yoe + era * 400 + (1 if self.month <= 2 else 0)

    def stamp(self, now):
        if not self._valid:
            self.year = self.month = self.day = 0
            self.hour = self.minute = self.second = self.msec = 0
            self._day = -1
            return
        el = ticks_diff(now, self._base_ms)
        if el < 0:
            el = 0
        sod = self._base_sod + el // 1000
        days = self._base_days
        while sod >= _DAY_S:
            sod -= _DAY_S
            days += 1
        if days != self._day:
            self._civil(days)
            self._day = days
        self.hour = sod // 3600
        self.minute = (sod // 60) % 60
        self.second = sod % 60
        self.msec = el % 1000
