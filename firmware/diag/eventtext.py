"""Human-readable text for decoded event-log records (console ``faults()``)."""
from gbt.stages import STAGE_NAMES
from safety.risk import name_of
from diag import eventlog as ev

_LEVELS = ("off", "I", "II", "III")


def cem_names(bits):
    return " ".join(n for b, n in _CEM_BITS if bits & b) or "-"


_CEM_BITS = ((0x00000001, "BRM"), (0x00000100, "BCP"), (0x00000400, "BRO"),
             (0x00010000, "BCS"), (0x00040000, "BCL"), (0x00100000, "BST"),
             (0x01000000, "BSD"))


def detail(r):
    """Human text for one decoded event-log record (see diag/eventlog.py)."""
    code, a, b, text = r[3], r[5], r[6], r[7]
    if code == ev.EV_BOOT:
        return "config %s" % ("ok" if a else "BAD")
    if code == ev.EV_STAGE:
        sn = STAGE_NAMES
        return "%s <- %s" % (sn[a] if 0 <= a < len(sn) else a, sn[b] if 0 <= b < len(sn) else b)
    if code == ev.EV_STOP:
        # text: the first 8 characters of the session's stop reason
        return "%s.. %s, CST fault 0x%03x" % (text, " ".join(
            n for bit, n in ((1, "condition"), (4, "manual"), (0x10, "fault"), (0x40, "BMS"))
            if a & bit) or "-", b)
    if code == ev.EV_CEM:
        return cem_names(a)
    if code == ev.EV_TRIP:
        return "%s value %d" % (name_of(a), b)
    if code in (ev.EV_RISK_RAISED, ev.EV_RISK_CLEARED):
        return "%s L%s" % (name_of(a), _LEVELS[b] if 0 <= b < 4 else b)
    if code == ev.EV_LOCKOUT:
        return "%s %d h VIN ..%s" % (name_of(a), b, text)
    if code == ev.EV_LOCKOUT_CLEARED:
        return name_of(a)
    if code == ev.EV_OPERATOR:
        on = ev.OP_NAMES
        return "%s %s%s" % (on[a] if 0 <= a < len(on) else a, b or "", text)
    if code == ev.EV_BST:
        return "reason 0x%02x fault 0x%04x" % (a, b)
    if code == ev.EV_FAILSAFE:
        return "exception %s.." % text
    if code == ev.EV_CONFIG_ERROR:
        return "#%d %s.." % (a, text)
    if code == ev.EV_BEM:
        return "BMS reports timeout 0x%08x" % (a & 0xFFFFFFFF)
    if code == ev.EV_INTRUSION:
        from gbt.intrusion import name as ix_name
        return "%s 0x%x" % (ix_name(a), b)
    if code == ev.EV_STORE:
        return ("safety record unusable: charging refused, clear_store_fault()" if a
                else "%d store warning(s) at boot" % b)
    if code == ev.EV_AUTH:
        from security.roles import AU_NAMES, ROLE_NAMES
        return "%s %s %s" % (AU_NAMES[a] if 0 <= a < len(AU_NAMES) else a,
                             ROLE_NAMES[b] if 0 <= b < len(ROLE_NAMES) else b, text)
    if code == ev.EV_SESSION:
        return "#%d VIN ..%s" % (a, text)
    return ("%d %d %s" % (a, b, text)).strip()
