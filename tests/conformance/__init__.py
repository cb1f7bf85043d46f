"""GB/T 34658-style protocol conformance suite for the charger under test.

The charger is our firmware on the SIL bench (real MicroPython, lock-step
simulated time), driven by the BMS simulator and by raw frames; every
assertion is on the frames on the bus and on the firmware outputs, in
simulated milliseconds.  Case list: docs/conformance.md.
"""
