"""CAN BMS simulator (GB/T 27930 BMS side) for bench-testing a charger, on python-can.

    from host_tools.bms import BmsSimulator, BmsParams, BatteryPack, Scenario
"""
from .battery import BatteryPack, Chemistry, CHEMISTRIES, cc_cv_demand
from .checks import CheckResult, FAIL, NOT_RUN, PASS, overall
from .params import BmsParams, CheckLimits, Timeouts, load_params
from .scenario import Action, Scenario
from .simulator import BmsSimulator
from .tp import TpFault, TpSender, TpTimers

__all__ = ["BatteryPack", "Chemistry", "CHEMISTRIES", "cc_cv_demand", "CheckResult", "PASS", "FAIL", "NOT_RUN",
           "overall", "BmsParams", "CheckLimits", "Timeouts", "load_params", "Action", "Scenario",
           "BmsSimulator", "TpFault", "TpSender", "TpTimers"]
