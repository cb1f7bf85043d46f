"""Pin map and analogue scaling of the STM32 reference control board.

A charger maker porting to another STM32 board edits THIS FILE ONLY (see
docs/boards.md).  Pins are MicroPython pin names (``machine.Pin("B0")`` is
PB0 on every STM32 board).  Everything is plain data.

Scaling: a 16-bit ``ADC.read_u16()`` count ``raw`` means
``raw * mul // div + off`` in firmware units (firmware/board.py: 0.1 V, 0.1 A,
mV, 0.1 degC, mA, kOhm).  Keep ``65535 * mul`` below 2**30 so the product
stays a small int (no heap) on a 32-bit MCU: ``mul`` <= 16383.

Fail-safe wiring assumption: every output driver has a pull-down (or
pull-up, for an active-low one) so that a pin that is not driven (reset,
crash, boot) leaves the function OFF.  The firmware's safe state is the
belt, the hardware default the braces.
"""

NAME = "stm32-ref"

# --- CAN (GB/T 27930: 250 kbit/s, 29-bit identifiers) ---------------------
CAN_BUS = 1                 # CAN1 on PB8 (RX) / PB9 (TX), pyboard "YA"
CAN_BITRATE = 250000
CAN_SAMPLE_POINT = 87       # percent; J1939-11 recommends 87.5 %
CAN_DRIVER = "auto"         # "machine" (MicroPython >= 1.28), "pyb", "auto"
# Hardware acceptance filters as (id, mask) on 29-bit ids; None = accept all.
# Default: everything whose source address (bits 0-7) is the BMS, 0xF4.
CAN_FILTERS = ((0x000000F4, 0x000000FF),)

# --- digital outputs: (Outputs attribute, pin, level that turns it ON) ----
OUTPUTS = (
    ("pwr_en", "B0", 1),    # power-stage enable
    ("k12", "B1", 1),       # DC contactors K1/K2 coil driver
    ("k34", "B2", 1),       # auxiliary 12 V supply K3/K4
    ("lock", "B10", 1),     # electronic lock actuator
    ("bleed", "B11", 1),    # bleeder / discharge circuit
)

# --- set-points to the power stage by filtered PWM ------------------------
# (Outputs attribute, pin, PWM frequency Hz, mul, div):
# duty_u16 = value * mul // div, clamped to 0..65535.
SETPOINTS = (
    ("v_set", "A8", 20000, 65535, 10000),   # 0 .. 1000.0 V -> 0 .. 100 %
    ("i_set", "A9", 20000, 65535, 2500),    # 0 .. 250.0 A  -> 0 .. 100 %
)

# --- digital inputs: (Inputs attribute, pin, pull, level meaning "1") -----
# pull: "up", "down" or None.
DIGITAL_IN = (
    ("estop", "C0", "up", 1),     # NC contact to GND: pressed OR broken wire -> 1
    ("k12_fb", "C1", "up", 0),    # K1/K2 auxiliary contact closes to GND
    ("lock_fb", "C2", "up", 0),   # lock feedback switch closes to GND
    ("mains_ok", "C3", "up", 0),  # AC monitor relay closes to GND when mains OK
)

# --- analogue inputs: (Inputs attribute, pin, mul, div, off) ---------------
# pin None = not fitted (the attribute keeps its default, e.g. insulation -1).
ANALOG = (
    ("v_inside", "A0", 11000, 65535, 0),      # 0..3.3 V = 0..1100.0 V divider
    ("v_outside", "A1", 11000, 65535, 0),
    ("i_out", "A2", 5000, 65535, -2500),      # Hall sensor, +-250 A around mid-scale
    ("cc1_mv", "A3", 13200, 65535, 0),        # CC1 detection point, 4:1 divider
    ("t_gun_pos", "A4", 2500, 65535, -500),   # transmitter 0..3.3 V = -50..200 degC
    ("t_gun_neg", "A5", 2500, 65535, -500),
    ("insulation_kohm", "A6", 10000, 65535, 0),  # IMD analogue output 0..10 MOhm
    ("leakage_ma", "A7", 100, 65535, 0),      # residual current monitor 0..100 mA
)

# --- hard protection (boards/stm32/fastprot.py) ----------------------------
PROT_V = "v_inside"         # ANALOG entry checked for H-1
PROT_I = "i_out"            # ANALOG entry checked for H-2
PROT_ESTOP = "estop"        # DIGITAL_IN entry checked for H-3
PROT_TIMER_ID = -1          # stm32 machine.Timer: virtual (SysTick) timer
PROT_HARD = True            # run the callbacks in hard IRQ context

# --- watchdog ---------------------------------------------------------------
WDT_ID = 0
