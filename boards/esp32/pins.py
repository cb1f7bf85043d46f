"""Pin map and analogue scaling of the ESP32 reference control board.

Reference: an ESP32-S3 module (ADC1 on GPIO1..10, usable while Wi-Fi runs)
with an MCP2515 CAN controller + transceiver on SPI.  A charger maker
porting to another ESP32 board edits THIS FILE ONLY (docs/boards.md).
Pins are GPIO numbers.  The tables have the same meaning as in
boards/stm32/pins.py: ``raw * mul // div + off`` for a ``read_u16()`` count,
``65535 * mul`` < 2**30.

ESP32 ADC note: read_u16 is not linear near the ends of the range; the
divider should keep the working range within ~0.15..2.5 V at 11 dB.
"""

NAME = "esp32s3-mcp2515-ref"

# --- CAN via MCP2515 ------------------------------------------------------
CAN_BITRATE = 250000
CAN_SAMPLE_PERMILLE = 875       # J1939-11: 87.5 %
# (id, mask) pairs on 29-bit ids, at most 2 (MCP2515 has two masks); None = all.
CAN_FILTERS = ((0x000000F4, 0x000000FF),)   # source address = BMS
MCP_OSC_HZ = 8000000            # crystal on the MCP2515 module: 8 or 16 MHz
MCP_SPI_ID = 2
MCP_SPI_BAUD = 8000000          # MCP2515: max 10 MHz
MCP_SCK = 12
MCP_MOSI = 11
MCP_MISO = 13
MCP_CS = 10
MCP_INT = 9                     # INT (active low); None = polled only

# --- digital outputs: (Outputs attribute, GPIO, level that turns it ON) ----
OUTPUTS = (
    ("pwr_en", 14, 1),
    ("k12", 15, 1),
    ("k34", 16, 1),
    ("lock", 17, 1),
    ("bleed", 18, 1),
)

# --- set-points by filtered PWM: (attr, GPIO, Hz, mul, div) ---------------
SETPOINTS = (
    ("v_set", 21, 20000, 65535, 10000),
    ("i_set", 47, 20000, 65535, 2500),
)

# --- digital inputs: (Inputs attribute, GPIO, pull, level meaning "1") ----
DIGITAL_IN = (
    ("estop", 38, "up", 1),
    ("k12_fb", 39, "up", 0),
    ("lock_fb", 40, "up", 0),
    ("mains_ok", 41, "up", 0),
)

# --- analogue inputs (ADC1): (Inputs attribute, GPIO, mul, div, off) ------
ADC_ATTEN = "ATTN_11DB"         # machine.ADC attenuation constant name
ANALOG = (
    ("v_inside", 1, 11000, 65535, 0),
    ("v_outside", 2, 11000, 65535, 0),
    ("i_out", 3, 5000, 65535, -2500),
    ("cc1_mv", 4, 13200, 65535, 0),
    ("t_gun_pos", 5, 2500, 65535, -500),
    ("t_gun_neg", 6, 2500, 65535, -500),
    ("insulation_kohm", 7, 10000, 65535, 0),
    ("leakage_ma", 8, 100, 65535, 0),
)

# --- hard protection --------------------------------------------------------
PROT_V = "v_inside"
PROT_I = "i_out"
PROT_ESTOP = "estop"
PROT_TIMER_ID = 0               # ESP32 hardware timer 0
# ESP32: the ADC driver is not safe in a hard ISR, so the protection
# callbacks are scheduled (soft) interrupts; see docs/boards.md.
PROT_HARD = False

WDT_ID = 0
