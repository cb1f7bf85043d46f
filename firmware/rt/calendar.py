"""Civil date-time from seconds since 1970, without the port's ``time.gmtime``.

Not every MicroPython port has ``time.gmtime``/``localtime`` (the qemu port
has neither; stm32 and esp32 do, and disagree on the epoch when built with
``MICROPY_EPOCH_IS_1970`` off).  CTS and the records need only the
proleptic Gregorian calendar, so this computes it with integer arithmetic
(days-from-civil inverted, 400-year eras): the same answer on every port,
small ints only (no heap beyond the result tuple).
"""


def civil(secs):
    """``secs`` (UTC seconds since 1970-01-01, may be negative) ->
    ``(year, month, day, hour, minute, second)``."""
    days = secs // 86400
    rem = secs - days * 86400
    hh = rem // 3600
    rem -= hh * 3600
    mi = rem // 60
    ss = rem - mi * 60
    z = days + 719468               # days since 0000-03-01
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
    return y, m, d, hh, mi, ss
