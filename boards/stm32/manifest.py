# Freeze the charger firmware and the STM32 board package into a custom
# MicroPython build (bytecode in flash: no compile at boot, less RAM).
#
#   git clone https://github.com/micropython/micropython && cd micropython
#   make -C mpy-cross
#   make -C ports/stm32 submodules BOARD=PYBV11
#   make -C ports/stm32 BOARD=PYBV11 \
#        FROZEN_MANIFEST=/path/to/this/repo/boards/stm32/manifest.py
#
# (any stm32 BOARD with CAN works; pick the one matching the control board).
# Then flash build-PYBV11/firmware.dfu and put a one-line /main.py on the
# board's filesystem:
#
#   import stm32.main; stm32.main.run()
#
# plus config.json.  See docs/boards.md.  Paths below are relative to this
# file (manifestfile.py runs it with this directory as the current one).

# The port's own frozen modules (asyncio, ...).
include("$(PORT_DIR)/boards/manifest.py")

# Every firmware package and top-level module.
include("../manifest_firmware.py")

# This board package, imported as `stm32.board`, `stm32.pins`, ...
package("stm32", files=["board.py", "pins.py", "can.py", "main.py"], base_path="..")
# The port-independent pin board it builds on (shared with the ESP32 board).
package("pinboard", files=["board.py", "fastprot.py"], base_path="..")
