"""Text of the console commands: number formats, line wrapping, dates and
the operator hint for a refusal reason.  Apart from ``diag.commands`` so
the formats are one definition for every command module."""


WIDTH = 80

# What a refusal means, by the start of the supervisor's / app's reason.
HINTS = (
    ("bad configuration", "config file invalid: see cfg(), fix it "
     "(host_tools.config_check), reboot"),
    ("exception", "the firmware stopped on an exception (H-9): faults(), reboot"),
    ("fail-safe", "the firmware stopped on an exception (H-9): faults(), reboot"),
    ("E-stop", "release the E-stop button, then reset_estop()"),
    ("safety record unusable", "the persisted safety state (latches, lockouts) "
     "could not be read at boot (see the store warnings): inspect, then "
     "clear_store_fault()"),
    ("contactor fault", "K1/K2 feedback disagreed with the command (welded or "
     "not closing): inspect, then clear_contactor_fault()"),
    ("tripped", "a protection tripped: risks() shows the cause; rearm() once "
     "it is gone (or unplug)"),
    ("needs confirmation", "an SOC anomaly (S-12/S-13) was recorded for this "
     "vehicle: check it, then ack()"),
    ("VIN locked out", "this vehicle raised the same risk repeatedly: "
     "locked out until the time shown (lockout.*)"),
    ("VIN capped", "this vehicle raised risks before: current capped (lockout.*)"),
)


def d1(v, na=True):
    """0.1-unit integer as text ("400.1"); NA (-1) as "-"."""
    if na and v == -1:
        return "-"
    s = "-" if v < 0 else ""
    v = -v if v < 0 else v
    return "%s%d.%d" % (s, v // 10, v % 10)


def num(v):
    return "-" if v == -1 else str(v)


def secs(v):
    return "%d.%d s" % (v // 1000, (v % 1000) // 100)


def latency(v):
    return "-" if v < 0 else "+%d ms" % v


def onoff(v):
    return "on" if v else "off"


def wrap(line, width=WIDTH):
    """Split a long line at spaces; continuation lines indented 4."""
    out = []
    while len(line) > width:
        k = line.rfind(" ", 0, width)
        if k <= 4:
            k = width
        out.append(line[:k].rstrip())
        line = "    " + line[k:].lstrip()
    out.append(line)
    return out


def date(s):
    """Firmware seconds (since 2020-01-01 UTC, ``rt.calendar``) ->
    "YYYY-MM-DD hh:mm:ss" (UTC); negative (the clock was not set): "clock unset"."""
    if s < 0:
        return "clock unset"
    from rt.calendar import civil
    return "%04d-%02d-%02d %02d:%02d:%02d" % civil(s)


def hint(reason):
    for k, h in HINTS:
        if reason and reason.startswith(k):
            return h
    return None
