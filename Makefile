# Everything goes through .venv, built from requirements.txt on first use.
PY_SYS ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help charge test bench deploy config-check bench-rt realtime clean venv firmware target-image sign fuzz platform-demo platform-bench mosquitto
.DEFAULT_GOAL := help
BOARD ?= stm32
# `make firmware` builds QEMU_M3 unless BOARD is given on the command line.
FW_BOARD := $(if $(filter command line environment,$(origin BOARD)),$(BOARD),QEMU_M3)

$(STAMP): requirements.txt setup.cfg pyproject.toml
	@test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

help:
	@echo "make charge [ARGS=\"--soc 20 --target-soc 80 ...\"]   a full simulated charge (out/charge/); ARGS=--help"
	@echo "make realtime [ARGS=\"--console --bms ...\"]          the SIL bench in real time, bus on 127.0.0.1:29536"
	@echo "make test [PYTEST_ARGS=\"-k console -x\"]             the test suite (builds the QEMU image first)"
	@echo "make bench [ARGS=...]                                  firmware benchmarks (bench/results/)"
	@echo "make config-check CONFIG=config.json BOARD=stm32       validate a configuration with the firmware's rules"
	@echo "make deploy PORT=/dev/ttyACM0 BOARD=stm32 CONFIG=...   precompile and copy to a board (ARGS=--dry-run)"
	@echo "make firmware [BOARD=QEMU_M3|PYBV11|NUCLEO_H743ZI]     a flashable image with the charger frozen in"
	@echo "make sign KEYS=keys.sign.json VERSION=N             a signed update bundle of the firmware (build/update/)"
	@echo "make fuzz [FUZZ_N=1000000]                             fuzz every parser of outside input, FUZZ_N inputs each"
	@echo "make platform-demo [ARGS=...]                          SIL chargers -> sealed link (C-2) -> mosquitto -> Parquet store -> A-1/A-2 alarms -> sealed stop (ARGS=--plain: no link security)"
	@echo "make platform-bench [ARGS=...]                         platform scale figures on a synthetic fleet (out/platform-bench/)"
	@echo "make venv                                              build .venv from requirements.txt"
	@echo "make clean                                             remove build/, out/ and test caches"
	@echo "Docs: README.md, docs/ (developer notes: docs/development.md)"

venv: $(STAMP)

charge: $(STAMP)
	$(PY) -m host_tools.charge $(ARGS)

# The QEMU target image (product + test variant, + the bare stock image on
# which tests/test_mpy_heap.py measures the .mpy install) is built first: the
# target tests (tests/target/) boot it under qemu-system-arm.
test: $(STAMP) target-image mosquitto
	$(PY) -m pytest -q $(PYTEST_ARGS)

# A flashable image with the charger frozen in; prints flash and RAM use.
# make firmware BOARD=QEMU_M3|PYBV11|NUCLEO_H743ZI   (installs the Debian toolchain if missing)
firmware: $(STAMP)
	$(PY) -m host_tools.firmware build --board $(FW_BOARD) $(ARGS)

target-image: $(STAMP)
	$(PY) -m host_tools.firmware build --board QEMU_M3
	$(PY) -m host_tools.firmware build --board QEMU_M3 --variant test
	$(PY) -m host_tools.firmware build --board QEMU_M3 --variant bare

bench: $(STAMP)
	$(PY) -m host_tools.bench $(ARGS)

# Flash the image (built if missing) + config.json + /main.py:
#   make deploy PORT=/dev/ttyACM0 BOARD=PYBV11|NUCLEO_H743ZI [CONFIG=config.json] [ARGS=--dry-run]
# .mpy files instead (boards whose heap holds them): ARGS=--mpy (esp32: ARGS="--mpy --psram").
# BOARD=stm32 means PYBV11.  docs/deploy.md
deploy: $(STAMP)
	$(if $(BUNDLE),$(PY) -m host_tools.update_bundle verify $(BUNDLE) --pub $(or $(KEYS),keys.json))
	$(PY) -m host_tools.deploy --port $(PORT) --board $(BOARD) $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

# Signed firmware update bundle (docs/security.md, C-3):
#   make sign KEYS=keys.sign.json VERSION=N [OUT=build/update/firmware.evu]
sign: $(STAMP)
	$(PY) -m host_tools.update_bundle sign --keys $(KEYS) --version $(VERSION) $(if $(OUT),--out $(OUT))

# The security parsers under hypothesis with 10**6 inputs each (make test: 20,000)
# Every parser that reads outside bytes, FUZZ_N hypothesis inputs each, one
# after the other under nice -n 19 (docs/security.md "Fuzzing"); one line
# per parser (name, inputs, seconds) in out/fuzz/report.txt.
FUZZ_N ?= $(or $(EVC_FUZZ_EXAMPLES),1000000)
fuzz: $(STAMP)
	@mkdir -p out/fuzz && rm -f out/fuzz/report.txt
	EVC_FUZZ_EXAMPLES=$(FUZZ_N) EVC_FUZZ_REPORT=out/fuzz/report.txt nice -n 19 $(PY) -m pytest -q -s -p no:cacheprovider \
	  tests/test_security_host.py tests/test_fuzz_gbt.py tests/test_fuzz_host.py -k fuzz
	@cat out/fuzz/report.txt

# Validate a configuration file with the firmware's own rules: make config-check CONFIG=config.json
config-check: $(STAMP)
	$(PY) -m host_tools.config_check $(CONFIG) --board $(BOARD)

# The SIL bench in real time, bus open to other python-can programs on 127.0.0.1:29536
realtime: $(STAMP)
	$(PY) -m host_tools.sil $(ARGS)

# The monitoring platform (docs/platform.md).  mosquitto comes from Debian:
# installed with apt-get when missing (as root), like the ARM toolchain.
mosquitto:
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
	  { test "$$(id -u)" = 0 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mosquitto >/dev/null; } || \
	  { test "$$(id -u)" = 0 && apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mosquitto >/dev/null; } || \
	  { echo "mosquitto is missing and could not be installed: apt-get install mosquitto (as root)"; exit 1; }

platform-demo: $(STAMP) mosquitto
	$(PY) -m host_tools.platform demo $(ARGS)

platform-bench: $(STAMP) mosquitto
	$(PY) -m host_tools.platform bench $(ARGS)

clean:
	rm -rf build out .pytest_cache .hypothesis
