# Freeze the charger firmware and the ESP32 board package into a custom
# MicroPython build.
#
#   git clone https://github.com/micropython/micropython && cd micropython
#   make -C mpy-cross
#   cd ports/esp32        # with ESP-IDF installed and exported
#   make BOARD=ESP32_GENERIC_S3 \
#        FROZEN_MANIFEST=/path/to/this/repo/boards/esp32/manifest.py
#
# Then flash it and put a one-line /main.py on the board's filesystem:
#
#   import esp32b.main; esp32b.main.run()
#
# plus config.json.  See docs/boards.md.
#
# Package name: on the ESP32 port `esp32` is a built-in module, which
# shadows a package of that name, so this directory is frozen as `esp32b`.
# manifestfile.py has no "freeze under another name", so the files are
# staged into a temporary `esp32b/` directory first (this manifest is
# ordinary Python, run with this directory as the current one).
import os
import shutil
import tempfile

include("$(PORT_DIR)/boards/manifest.py")

# Every firmware package and top-level module.
include("../manifest_firmware.py")

# Shared, port-independent board parts (PinBoard, the interrupt trip path).
package("pinboard", files=["board.py", "fastprot.py"], base_path="..")

_stage = tempfile.mkdtemp(prefix="evcharger-esp32b-")
os.mkdir(os.path.join(_stage, "esp32b"))
for _f in ("board.py", "pins.py", "mcp2515.py", "mcp2515spi.py", "main.py"):
    shutil.copy(_f, os.path.join(_stage, "esp32b", _f))
package("esp32b", base_path=_stage)
