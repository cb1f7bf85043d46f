"""STM32 board glue (boards/stm32) on the fakes: CAN through machine.CAN and
the pyb.CAN fallback, ADC scaling, outputs, force_safe, trip latch, WDT,
main.py fail-safe, and allocation-freedom of the per-tick calls."""
import sys
sys.path.insert(0, "boards")
import machine
import pyb
import mptest
import config
import board as contract
from stm32.board import Stm32Board
from stm32 import pins as P
from pinboard.fastprot import raw_max, TRIP_OV
from doubles import FakeModule, contract_passes

BMS_ID = 0x181156F4          # BCS-like id, DA 0x56, SA 0xF4


def make(driver=None, cfg=None, pins=None):
    machine.t_reset()
    del pyb.cans[:]
    c = config.defaults()
    if cfg:
        c.update(cfg)
    b = Stm32Board(c, pins=pins, driver=driver)
    machine.set_level("C3", 0)      # mains OK relay closed
    machine.set_level("C0", 0)      # E-stop loop closed (released)
    return b


def can_fake(b):
    return b._can.can


def test_console_stream_on_the_repl_port_never_blocks():
    """The board's console is the REPL's stdin/stdout, read without
    blocking (here stdin is the test runner's pipe, with nothing in it)."""
    b = make()
    st = b.console_stream({"console.tx_timeout_ms": 5})
    buf = bytearray(16)
    mptest.eq(st.readinto(buf), 0, "no input pending: 0 bytes, no wait")
    mptest.eq(st.write(b"ok\r\n"), 4, "output written")


def test_outputs_off_at_construction():
    make()
    for attr, pid, on in P.OUTPUTS:
        mptest.eq(machine.level(pid), 1 - on, "%s off at boot" % attr)
    for attr, pid, f, m, d in P.SETPOINTS:
        mptest.eq(machine.pwms[pid].duty, 0, "%s zero" % attr)


def test_machine_can_round_trip():
    b = make("machine")
    mptest.eq(b.can_driver, "machine", "driver")
    cf = can_fake(b)
    mptest.eq(cf.bitrate, 250000, "bit rate")
    buf = bytearray(b"\x11\x22\x33\x44\x55\x66\x77\x88")
    mptest.true(b.can_send(0x1CEC56F4 ^ 0xA2, buf, 8), "sent")
    mptest.true(b.can_send(0x181056F4, buf, 3), "sent 3")
    mptest.eq(cf.core.t_sent(), [(0x1CEC56F4 ^ 0xA2, bytes(buf), 1),
                                 (0x181056F4, b"\x11\x22\x33", 1)], "frames on the bus")
    cf.core.t_inject(BMS_ID, b"\x01\x02\x03\x04\x05")
    f = contract.CanFrame()
    mptest.true(b.can_recv(f), "received")
    mptest.eq((f.id, f.dlc, bytes(f.data[:f.dlc])), (BMS_ID, 5, b"\x01\x02\x03\x04\x05"), "frame")
    mptest.eq(b.can_recv(f), False, "empty")


def test_filters_accept_only_the_bms():
    b = make("machine")
    cf = can_fake(b)
    mptest.eq(cf.core.t_inject(0x181156F3, b"\x00"), False, "other source rejected")
    mptest.eq(cf.core.t_inject(0x123, b"\x00", ext=False), False, "standard frame rejected")
    mptest.eq(cf.core.t_inject(BMS_ID, b"\x00"), True, "BMS accepted")


def test_send_full_and_bad_length_return_false():
    b = make("machine")
    cf = can_fake(b)
    cf.core.hold_tx = True
    buf = bytearray(8)
    for k in range(3):
        mptest.true(b.can_send(0x1801F456 + k, buf, 8), "slot %d" % k)
    mptest.eq(b.can_send(0x1801F456, buf, 8), False, "fourth: queue full")
    mptest.eq(b.can_send(0x1801F456, buf, 9), False, "dlc 9 refused")
    cf.core.t_complete()
    mptest.true(b.can_send(0x1801F456, buf, 8), "free again")


def test_bus_off_detected_and_restarted_by_idle():
    b = make("machine", {"hw.can_restart_ms": 1})
    cf = can_fake(b)
    cf.core.t_errors(100, 0)
    mptest.eq(b.can_state(), contract.CAN_ERROR_WARNING, "warning")
    cf.core.t_errors(130, 0)
    mptest.eq(b.can_state(), contract.CAN_ERROR_PASSIVE, "passive")
    cf.core.t_bus_off()
    mptest.eq(b.can_state(), contract.CAN_BUS_OFF, "bus-off")
    mptest.eq(b.can_send(0x1801F456, bytearray(8), 8), False, "no send in bus-off")
    out = [0] * 5
    b.can_counters(out)
    mptest.eq(out[0], 256, "TEC")
    b.idle(b.clock.ticks_ms())
    mptest.eq(b.can_restarts, 0, "not before hw.can_restart_ms")
    import time
    time.sleep_ms(3)
    b.idle(b.clock.ticks_ms())
    mptest.eq(b.can_restarts, 1, "restarted")
    mptest.eq(b.can_state(), contract.CAN_ERROR_ACTIVE, "active again")


def test_pyb_can_fallback():
    b = make("pyb")
    mptest.eq(b.can_driver, "pyb", "driver")
    c = b._can.can
    mptest.eq(c.kw["baudrate"], 250000, "bit rate")
    mptest.eq(c.filters[0][:3], (0xF4, 0xFF, True), "ext filter on the BMS source")
    mptest.true(b.can_send(0x1801F456, bytearray(b"\x01\x02"), 2), "send")
    mptest.eq(c.core.t_sent(), [(0x1801F456, b"\x01\x02", True)], "data/id order and extframe")
    c.core.hold_tx = True
    for _ in range(3):
        b.can_send(0x1801F456, bytearray(8), 8)
    mptest.eq(b.can_send(0x1801F456, bytearray(8), 8), False, "mailboxes full: False, no raise")
    c.core.t_inject(BMS_ID, b"\x09\x08")
    f = contract.CanFrame()
    mptest.true(b.can_recv(f), "recv")
    mptest.eq((f.id, f.dlc, f.data[0], f.data[1]), (BMS_ID, 2, 9, 8), "frame")
    mptest.eq(b.can_recv(f), False, "empty: False, no raise")
    c.core.t_bus_off()
    mptest.eq(b.can_state(), contract.CAN_BUS_OFF, "bus-off")


def test_read_inputs_scaling():
    b = make()
    inp = contract.Inputs()
    machine.set_adc("A0", 65535)            # full scale = 1100.0 V
    machine.set_adc("A1", 32768)
    machine.set_adc("A2", 32768)            # mid-scale = 0 A
    machine.set_adc("A3", 32768)
    machine.set_adc("A4", 0)
    machine.set_adc("A5", 13107)            # 1/5 scale = 0 degC
    machine.set_adc("A6", 6554)
    machine.set_adc("A7", 19661)
    machine.set_level("C0", 1)              # E-stop pressed
    machine.set_level("C1", 0)              # K1/K2 aux closed
    b.read_inputs(inp)
    mptest.eq(inp.v_inside, 11000, "v_inside dV")
    mptest.eq(inp.v_outside, 5500, "v_outside dV")
    mptest.eq(inp.i_out, 0, "i_out dA")
    mptest.eq(inp.cc1_mv, 6600, "cc1 mV")
    mptest.eq(inp.t_gun_pos, -500, "t_gun_pos 0.1 degC")
    mptest.eq(inp.t_gun_neg, 0, "t_gun_neg 0.1 degC")
    mptest.eq(inp.insulation_kohm, 1000, "insulation kOhm")
    mptest.eq(inp.leakage_ma, 30, "leakage mA")
    mptest.eq((inp.estop, inp.k12_fb, inp.lock_fb, inp.mains_ok), (1, 1, 0, 1), "digital")


def test_write_outputs_and_setpoints():
    b = make()
    out = contract.Outputs()
    out.k12 = 1
    out.k34 = 1
    out.lock = 1
    out.pwr_en = 1
    out.v_set = 5000
    out.i_set = 1250
    b.write_outputs(out)
    for pid in ("B0", "B1", "B2", "B10"):
        mptest.eq(machine.level(pid), 1, pid)
    mptest.eq(machine.level("B11"), 0, "bleed off")
    mptest.eq(machine.pwms["A8"].duty, 32767, "500.0 V -> 50 %")
    mptest.eq(machine.pwms["A9"].duty, 32767, "125.0 A -> 50 %")
    out.v_set = 99999
    b.write_outputs(out)
    mptest.eq(machine.pwms["A8"].duty, 65535, "clamped")


class ActiveLow:
    """A pin map whose K1/K2 and power enable are active-low."""
    NAME = "active-low"
    CAN_BUS = 1
    CAN_BITRATE = 250000
    CAN_SAMPLE_POINT = 87
    CAN_DRIVER = "machine"
    CAN_FILTERS = None
    OUTPUTS = (("pwr_en", "B0", 0), ("k12", "B1", 0), ("k34", "B2", 1),
               ("lock", "B10", 1), ("bleed", "B11", 0))
    SETPOINTS = ()
    DIGITAL_IN = (("estop", "C0", "up", 1),)
    ANALOG = (("v_inside", "A0", 11000, 65535, 0), ("i_out", "A2", 5000, 65535, -2500))
    PROT_V = "v_inside"
    PROT_I = "i_out"
    PROT_ESTOP = "estop"
    PROT_TIMER_ID = -1
    PROT_HARD = True
    WDT_ID = 0


def test_active_low_outputs():
    b = make(pins=ActiveLow)
    mptest.eq((machine.level("B0"), machine.level("B1"), machine.level("B11")), (1, 1, 1),
              "active-low pins idle high (off)")
    out = contract.Outputs()
    out.pwr_en = 1
    out.k12 = 1
    b.write_outputs(out)
    mptest.eq((machine.level("B0"), machine.level("B1")), (0, 0), "driven low = on")
    b.force_safe()
    mptest.eq((machine.level("B0"), machine.level("B1"), machine.level("B11")), (1, 1, 0),
              "safe: off, off, bleeder on (low)")


def _all_on(b):
    out = contract.Outputs()
    out.k12 = out.k34 = out.lock = out.pwr_en = 1
    out.v_set = 5000
    out.i_set = 1000
    b.write_outputs(out)
    return out


def test_force_safe_drives_every_pin_safe():
    b = make()
    _all_on(b)
    machine.set_adc("A2", 32768)            # 0 A: open at once
    b.force_safe()
    mptest.eq(machine.level("B0"), 0, "power stage off")
    mptest.eq(machine.level("B1"), 0, "K1/K2 open")
    mptest.eq(machine.level("B2"), 0, "K3/K4 off")
    mptest.eq(machine.level("B11"), 1, "bleeder on")
    mptest.eq(machine.level("B10"), 1, "lock untouched")
    mptest.eq(machine.pwms["A8"].duty, 0, "v_set 0")
    mptest.eq(machine.pwms["A9"].duty, 0, "i_set 0")
    mptest.true(machine.pin("B0").last_seq < machine.pin("B1").last_seq, "power off before K1/K2")


def test_force_safe_waits_bounded_for_current():
    # the command leaves the contactor trip.k_release_ms (20) + trip.k_margin_ms (5)
    b = make(cfg={"hw.k_open_deadline_ms": 45})
    _all_on(b)
    machine.set_adc("A2", 65535)            # 250 A and never falls
    import time
    t0 = time.ticks_ms()
    b.force_safe()
    dt = time.ticks_diff(time.ticks_ms(), t0)
    mptest.eq(machine.level("B1"), 0, "opened anyway after the deadline")
    mptest.true(dt >= 20, "waited for the current first (%d ms)" % dt)
    mptest.true(dt < 45 - 5, "commanded open before the contacts' deadline (%d ms)" % dt)


def test_write_outputs_cannot_override_a_trip():
    b = make()
    out = _all_on(b)
    machine.set_adc("A0", 65535)            # 1100 V > 825 V
    machine.set_adc("A2", 32768)
    machine.timers[0].t_fire(1)
    mptest.eq(b.hw_trip(), TRIP_OV, "latched cause")
    b.write_outputs(out)                     # the loop still asks for power
    mptest.eq(machine.level("B0"), 0, "power stays off")
    mptest.eq(machine.level("B1"), 0, "K1/K2 stay open")
    mptest.eq(machine.pwms["A8"].duty, 0, "set-point held at 0")
    mptest.eq(machine.level("B2"), 1, "K3/K4 still the loop's (BMS needs aux power for CST)")
    mptest.eq(b.hw_trip_reset(), False, "refused while over-voltage persists")
    machine.set_adc("A0", 20000)
    mptest.eq(b.hw_trip_reset(), True, "reset")
    b.write_outputs(out)
    mptest.eq(machine.level("B0"), 1, "power allowed again")


def test_protection_timer_from_pins_and_config():
    make(cfg={"hw.prot_period_ms": 2})
    t = machine.timers[0]
    mptest.eq((t.id, t.period, t.hard, t.running), (-1, 2, True, True), "timer")


def test_watchdog_starts_in_idle_and_is_fed_by_it():
    b = make()
    mptest.eq(len(machine.wdts), 0, "not started at construction")
    now = b.clock.ticks_ms()
    b.idle(now)
    mptest.eq(len(machine.wdts), 1, "started by the main loop")
    mptest.eq(machine.wdts[0].timeout, 1000, "timeout from config")
    b.idle(now)
    mptest.eq(machine.wdts[0].feeds, 2, "fed each pass")
    b2 = make(cfg={"hw.wdt_ms": 0})
    b2.idle(now)
    mptest.eq(len(machine.wdts), 0, "0 = no watchdog")


def test_per_tick_calls_allocate_nothing():
    b = make()
    cf = can_fake(b)
    buf = bytearray(b"\x01\x02\x03\x04\x05\x06\x07\x08")
    for k in range(6):
        cf.core.t_inject(BMS_ID + (k << 8), buf)
    b.can_recv(contract.CanFrame())      # the fake's first recv builds its views
    cnt = contract_passes(b, 5, buf, b.hw_trip)
    mptest.eq(cnt[2], 5, "tx frames counted")
    mptest.eq(cnt[3], 6, "rx frames counted")


def test_rtc_s_in_the_firmware_epoch():
    # board contract: seconds since 2020-01-01 UTC.  Here (unix port, fakes)
    # time.time() counts from 1970; on stm32/esp32 from 2000 (the offset is
    # chosen from time.gmtime(0)): either way rtc_s() - time.time() is the
    # port's epoch offset
    import time
    from rt import calendar as C
    b = make()
    off = 1577836800 if time.gmtime(0)[0] == 1970 else 631152000
    mptest.eq(b._rtc_off, off, "port epoch offset")
    mptest.true(abs(b.rtc_s() - (int(time.time()) - off)) <= 1, "rtc_s")
    mptest.true(C.civil(b.rtc_s())[0] >= 2026, "a date of this decade")


def _fake_charger(fn):
    return FakeModule("charger", main=fn)


def test_main_leaves_outputs_safe_when_app_raises():
    machine.t_reset()
    import stm32.main as m
    seen = []

    def app(board, path, console=False):
        seen.append((board, path))
        _all_on(board)
        machine.set_adc("A2", 32768)
        raise RuntimeError("boom")

    with _fake_charger(app):
        mptest.raises(RuntimeError, m.run, "nonexistent.json")
    mptest.eq(seen[0][1], "nonexistent.json", "config path passed")
    mptest.true(isinstance(seen[0][0], Stm32Board), "board passed")
    mptest.eq((machine.level("B0"), machine.level("B1"), machine.level("B2")), (0, 0, 0),
              "power, K1/K2, K3/K4 off")


def test_main_safe_on_keyboard_interrupt():
    machine.t_reset()
    import stm32.main as m

    def app(board, path, console=False):
        _all_on(board)
        machine.set_adc("A2", 32768)
        raise KeyboardInterrupt

    with _fake_charger(app):
        mptest.raises(KeyboardInterrupt, m.run, "nonexistent.json")
    mptest.eq((machine.level("B0"), machine.level("B1")), (0, 0), "Ctrl-C leaves it off")


def test_main_pins_off_when_board_cannot_be_built():
    machine.t_reset()
    import stm32.main as m
    for pid in ("B0", "B1", "B2"):
        machine.Pin(pid, machine.Pin.OUT, value=1)
    real = m.build

    def broken(path):
        raise OSError("no CAN")

    m.build = broken
    try:
        mptest.raises(OSError, m.run, "x.json")
    finally:
        m.build = real
    mptest.eq((machine.level("B0"), machine.level("B1"), machine.level("B2")), (0, 0, 0),
              "pins off from the pin map")


mptest.main(globals())
