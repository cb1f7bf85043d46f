"""Charger-session stages and the short texts the session reports.

Kept apart from ``gbt.session`` so that the console, telemetry and the
tests can name stages and stop causes without importing the state machine.
The texts are module constants: assigning one to the stop record
(``StopRecord``) on the hot path only stores a reference (no allocation).  Stage flow and the end
paths: docs/session.md.
"""
from micropython import const

IDLE = const(0)         # nothing plugged (CC1 outside the 4 V band)
CONNECTED = const(1)    # plugged, waiting for operator start (or auto start)
LOCKING = const(2)      # electronic lock commanded, waiting for its feedback
HANDSHAKE = const(3)    # K3/K4 on, CHM every 250 ms, waiting for BHM
INSULATION = const(4)   # self-check + insulation test + bleed (CHM continues)
RECOGNITION = const(5)  # CRM 0x00 -> BRM -> CRM 0xAA -> BCP
PARAMETER = const(6)    # CTS + CML, waiting for BRO 0xAA
PRECHARGE = const(7)    # battery voltage check, pre-charge, close K1/K2
CHARGING = const(8)     # CRO 0xAA, BCL/BCS/BSM in, CCS out
REHANDSHAKE = const(9)  # CEM on the bus, output down, hold-off before CRM 0x00
STOPPING = const(10)    # CST, current down, K1/K2 open, waiting for BST
STATISTICS = const(11)  # CSD out, waiting for BSD
FINISH = const(12)      # CEM hold (if any), aux power off, unlock at < 60 V
DONE = const(13)        # session over: unplug (or operator start) for the next

STAGE_NAMES = ("idle", "connected", "locking", "handshake", "insulation",
               "recognition", "parameter", "precharge", "charging",
               "rehandshake", "stopping", "statistics", "finish", "done")

# stop_why texts (short, fixed)
WHY_NONE = ""
WHY_OPERATOR = "operator stop"
WHY_BMS = "BMS stop (BST)"
WHY_TARGET = "target reached"
WHY_UNPLUG = "connector removed"
WHY_TRIP = "protection trip"
WHY_LOCK = "lock failed"
WHY_SELFCHECK = "voltage outside K1/K2"
WHY_NO_BHM = "no BHM"
WHY_BHM_LOW = "BHM voltage below charger range"
WHY_INS_FAULT = "insulation fault"
WHY_INS_VOLT = "insulation test voltage"
WHY_INS_NOREAD = "no insulation reading"
WHY_BLEED = "bleed failed"
WHY_VIN = "VIN refused"
WHY_BCP = "BCP incompatible"
WHY_BCP_RANGE = "BCP out of range"
WHY_BATT_V = "battery voltage mismatch"
WHY_PRECHARGE = "pre-charge failed"
WHY_BRO_DROP = "BRO dropped to 0x00"
WHY_BSM = "BSM abnormal"
WHY_PAUSE = "BSM pause too long"
WHY_COMM = "communication interrupted"
WHY_BST_TO = "BST timeout"
WHY_BSD_TO = "BSD timeout"
WHY_BRM_TO = "BRM timeout"
WHY_BCP_TO = "BCP timeout"
WHY_BRO_TO = "BRO timeout"
WHY_BCL_TO = "BCL timeout"
WHY_BCS_TO = "BCS timeout"
WHY_BEM = "BEM received"
WHY_STOP_REQ = "supervisor stop"


class StopRecord:
    """Why the current (or last) plug session stopped: one preallocated
    object, made by the session and shared with the transmitter (CST is
    encoded from ``reason``/``fault``/``error``), the console and the
    app's event log.  Written by the end path (``gbt.endstages``:
    ``EndStages.stop`` alone writes the masks and the cause, the first
    cause wins), by ``ChargerSession.on_trip`` (``trip``) and by the bleed
    checks (``bleed``); ``clear`` at every new plug session.  (No setter
    method: a method is one more function object on the heap, 32 B
    measured on the target.)
    The supervisor keeps its own masks: what it *asks* the session to send
    (``Supervisor.cst_*``), which a stop already under way does not change.
    The session's ``stop_why``, ``stop_detail``, ``timeout_why``,
    ``trip_why``, ``fault_why`` read these fields (``why``, ``detail``,
    ``timeout``, ``trip``, ``bleed``)."""

    def clear(self):
        self.reason = 0            # CST masks of this stop (what CST says)
        self.fault = 0
        self.error = 0
        self.why = WHY_NONE        # the stop's cause (text)
        self.detail = WHY_NONE     # BST/BSD timeout after the stop
        self.timeout = WHY_NONE    # cause of the last re-handshake
        self.trip = WHY_NONE       # the supervisor's trip code, once reported
        self.bleed = WHY_NONE      # bleed failure (insulation test or end)

    __init__ = clear
