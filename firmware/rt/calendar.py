"""The firmware's wall-clock epoch, and civil date-time without ``time.gmtime``.

**Firmware epoch: 2020-01-01 00:00:00 UTC.**  Every wall-clock value in the
firmware -- ``board.rtc_s()`` (the board contract), the event-log time
field, lockout days and "until" times, the telemetry date base -- counts
seconds from it.  Why not the Unix epoch: on a 32-bit MicroPython port a
small int holds |v| < 2**30, and Unix time (1.77e9 in 2026) is above that,
so every read of it and every sum with it would be a heap long int, once a
second in the slow task.  Seconds since 2020 stay small ints until 2054.
MicroPython's own ``time.time()`` counts from 2000 on stm32/esp32 (and from
1970 on unix), so boards convert once, with ``EPOCH_2000``/``EPOCH_UNIX``.
A negative value means a clock that is not set (it reads a date before
2020, e.g. an RTC that lost its backup supply and restarted at 2000-01-01).

Not every MicroPython port has ``time.gmtime``/``localtime`` (the qemu port
has neither; stm32 and esp32 do, and disagree on the epoch when built with
``MICROPY_EPOCH_IS_1970`` off).  CTS and the records need only the
proleptic Gregorian calendar, so ``civil`` computes it with integer
arithmetic (days-from-civil inverted, 400-year eras): the same answer on
every port, small ints only (no heap beyond the result tuple).
"""
from micropython import const

EPOCH_YEAR = const(2020)
# Unix time of the firmware epoch (a long int on 32-bit ports: for
# conversions at the edges -- harness arguments, host tools --, never in a
# per-tick path).
EPOCH_UNIX = 1577836800
# The firmware epoch in seconds since 2000-01-01 (MicroPython's embedded
# epoch); a small int everywhere.
EPOCH_2000 = const(631152000)
EPOCH_DAYS_UNIX = const(18262)    # days 1970-01-01 .. 2020-01-01
EPOCH_DAYS_2000 = const(7305)     # days 2000-01-01 .. 2020-01-01
_DAYS_0000_03_01 = const(737730)  # days 0000-03-01 .. 2020-01-01 (= 719468 + 18262)


def civil(secs):
    """``secs`` (seconds since the firmware epoch, 2020-01-01 00:00 UTC;
    may be negative) -> ``(year, month, day, hour, minute, second)``."""
    days = secs // 86400
    rem = secs - days * 86400
    hh = rem // 3600
    rem -= hh * 3600
    mi = rem // 60
    ss = rem - mi * 60
    y, m, d = civil_days(days)
    return y, m, d, hh, mi, ss


def civil_days(days):
    """Days since the firmware epoch -> ``(year, month, day)``."""
    z = days + _DAYS_0000_03_01     # days since 0000-03-01
    era = z // 146097               # 400-year eras (floor: works for z < 0)
    doe = z - era * 146097          # day of era, 0..146096
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)   # day of the March-based year
    mp = (5 * doy + 2) // 153       # month from March = 0
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return y, m, d


def from_unix(unix_s):
    """Unix seconds (e.g. the harness's ``--epoch``) -> firmware seconds."""
    return int(unix_s) - EPOCH_UNIX


def to_unix(fw_s):
    """Firmware seconds -> Unix seconds (host tools; allocates on 32-bit)."""
    return fw_s + EPOCH_UNIX


_port_offset = None


def port_offset():
    """Firmware seconds = the port's ``time.time()`` - this.  The port's
    epoch is 1970 where ``time.gmtime(0)`` says so (unix), else MicroPython's
    embedded 2000 (stm32, esp32; qemu has no gmtime and no RTC).  On a
    32-bit port with a 1970 epoch ``time.time()`` itself is a long int:
    such a board reads its RTC another way in its ``rtc_s``."""
    global _port_offset
    off = _port_offset
    if off is None:
        import time
        try:
            y = time.gmtime(0)[0]
        except (AttributeError, OSError, OverflowError):
            y = 2000
        off = _port_offset = EPOCH_UNIX if y == 1970 else EPOCH_2000
    return off


def port_rtc_s():
    """The port's ``time.time()`` in firmware seconds: the fallback for a
    board without its own ``rtc_s`` (and the CTS default without an app)."""
    import time
    return int(time.time()) - port_offset()
