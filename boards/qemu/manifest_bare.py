# A stock MicroPython on the QEMU board: only the board package's RAM
# filesystem and semihosting, NOT the charger.  The "bare" image variant
# (python -m host_tools.firmware build --board QEMU_M3 --variant bare, 1 MB
# heap) on which host_tools/mpy_heap.py measures the heap the charger needs
# when it is installed as .mpy files: with the charger frozen in, its qstrs
# would already be in flash and the measurement would miss them.
package("qemu", files=["semihost.py", "ramdisk.py", "main.py"], base_path="..")
