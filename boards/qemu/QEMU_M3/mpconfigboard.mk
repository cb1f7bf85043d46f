# The QEMU target board: upstream MicroPython's qemu port on the MPS2-AN385
# (Cortex-M3, soft float), with the charger frozen in and the heap of a
# PYBv1.1 (the floor of the reference platforms).  Built by
#   make firmware BOARD=QEMU_M3      (host_tools/firmware.py)
# which passes BOARD_DIR=<this directory> to ports/qemu.  See docs/boards.md.
QEMU_ARCH = arm
QEMU_MACHINE = mps2-an385

CFLAGS += -mthumb -mcpu=cortex-m3 -mfloat-abi=soft
CFLAGS += -DQEMU_SOC_MPS2
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M3"'

LDSCRIPT = mcu/arm/mps2.ld

SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb2.o

MPY_CROSS_FLAGS += -march=armv7m

# The GC heap of a PYBv1.1 running this firmware frozen: _heap_end -
# _heap_start of `make firmware BOARD=PYBV11` = 105,632 bytes (measured
# 2026-12, MicroPython 1.29 preview; docs/boards.md).
MICROPY_HEAP_SIZE ?= 105632

# littlefs on a RAM block device outside the GC heap stands in for the
# board's internal flash filesystem (config.json, state/).
MICROPY_VFS_LFS2 = 1

FROZEN_MANIFEST ?= $(BOARD_DIR)/../manifest.py

# mp_hal_time_ns() for littlefs timestamps (the port has no RTC), and a
# ticks_us() without the port's read race (board_time.c says why): the
# port's own is renamed in its object file.
SRC_C += $(BOARD_DIR)/board_time.c
$(BUILD)/mcu/arm/ticks.o: CFLAGS += -Dticks_us=ticks_us_port

# The interpreter as the stm32 port builds it (ports/stm32/mpconfigport.h):
# computed-goto bytecode dispatch (vm.c and gc.c get -O3 on both ports).
# The instruction mix then matches the F405 build the calibration refers to.
CFLAGS += -DMICROPY_OPT_COMPUTED_GOTO=1
