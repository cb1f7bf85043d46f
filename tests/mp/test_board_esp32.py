"""ESP32 board glue (boards/esp32) on the fakes: CAN through our MCP2515
driver talking to the register model, bus-off, ADC scaling, force_safe,
protection wiring, main.py fail-safe, and allocation-freedom per tick."""
import sys
sys.path.insert(0, "boards")
import machine
import mptest
import config
import board as contract
from mcp2515_model import MCP2515Model
from doubles import FakeModule, contract_passes
from esp32.board import Esp32Board
from esp32 import pins as P

BMS = 0x181156F4


def make(cfg=None, osc=8000000, attach=True):
    machine.t_reset()
    m = MCP2515Model(osc, int_pin=P.MCP_INT)
    if attach:
        machine.attach_spi(P.MCP_SPI_ID, m)
        machine.watch_pin(P.MCP_CS, m.select)
    c = config.defaults()
    if cfg:
        c.update(cfg)
    b = Esp32Board(c)
    machine.set_level(38, 0)        # E-stop loop closed
    machine.set_level(41, 0)        # mains OK
    return b, m


def test_outputs_off_and_can_configured():
    b, m = make()
    for attr, pid, on in P.OUTPUTS:
        mptest.eq(machine.level(pid), 1 - on, "%s off" % attr)
    mptest.eq(m.bitrate(), 250000, "250 kbit/s")
    mptest.eq(m.mode(), 0, "normal mode")
    mptest.eq(b.can_driver, "mcp2515", "driver")


def test_can_round_trip():
    b, m = make()
    buf = bytearray(b"\x10\x20\x30\x40\x50\x60\x70\x80")
    mptest.true(b.can_send(0x1826F456, buf, 8), "sent")
    mptest.eq(m.t_sent(), [(0x1826F456, bytes(buf), 1)], "on the bus")
    mptest.eq(m.t_inject(BMS, b"\x01\x02\x03"), "RXB0", "accepted")
    mptest.eq(m.t_inject(0x181156F3, b"\x01"), None, "other source filtered by the chip")
    f = contract.CanFrame()
    mptest.true(b.can_recv(f), "received")
    mptest.eq((f.id, f.dlc, bytes(f.data[:3])), (BMS, 3, b"\x01\x02\x03"), "frame")
    mptest.eq(b.can_recv(f), False, "empty")


def test_bus_off_and_recovery():
    b, m = make({"hw.can_restart_ms": 1})
    m.t_errors(256, 10)
    mptest.eq(b.can_state(), contract.CAN_BUS_OFF, "bus-off from EFLG.TXBO")
    out = [0] * 5
    b.can_counters(out)
    mptest.eq(out[:2], [255, 10], "TEC/REC")
    now = b.clock.ticks_ms()
    b.idle(now)
    import time
    time.sleep_ms(3)
    b.idle(b.clock.ticks_ms())
    mptest.eq(b.can_restarts, 1, "restarted by idle")
    mptest.eq(b.can_state(), contract.CAN_ERROR_ACTIVE, "active after re-init")


def test_read_inputs_scaling():
    b, m = make()
    machine.set_adc(1, 65535)
    machine.set_adc(3, 32768 + 13107)        # +100 A
    inp = contract.Inputs()
    b.read_inputs(inp)
    mptest.eq(inp.v_inside, 11000, "v_inside")
    mptest.eq(inp.i_out, 1000, "i_out")
    mptest.eq(inp.estop, 0, "released")
    mptest.eq(inp.mains_ok, 1, "mains ok")
    mptest.eq(b._adc["v_inside"][0].atten, machine.ADC.ATTN_11DB, "11 dB range")


def test_force_safe():
    b, m = make()
    out = contract.Outputs()
    out.pwr_en = out.k12 = out.k34 = out.lock = 1
    out.v_set = 4000
    b.write_outputs(out)
    machine.set_adc(3, 32768)
    b.force_safe()
    mptest.eq([machine.level(p) for p in (14, 15, 16, 17, 18)], [0, 0, 0, 1, 1],
              "pwr off, K1/K2 open, K3/K4 off, lock kept, bleeder on")
    mptest.eq(machine.pwms[21].duty, 0, "v_set 0")


def test_protection_soft_timer_trips():
    b, m = make()
    t = machine.timers[0]
    mptest.eq((t.id, t.hard), (0, False), "hardware timer 0, scheduled callback")
    out = contract.Outputs()
    out.pwr_en = out.k12 = 1
    b.write_outputs(out)
    machine.set_adc(3, 65535)               # 250 A > 240 A
    t.t_fire(1)
    mptest.eq(machine.level(14), 0, "power off")
    mptest.eq(machine.level(15), 1, "K1/K2 wait for the current")
    machine.set_adc(3, 32768)
    t.t_fire(1)
    mptest.eq(machine.level(15), 0, "open")


def test_per_tick_calls_allocate_nothing():
    b, m = make()
    buf = bytearray(8)
    for k in range(4):
        m.t_inject(BMS + (k << 8), buf)
    cnt = contract_passes(b, 4, buf)
    mptest.eq((cnt[2], cnt[3]), (4, 4), "tx, rx counted")


def test_main_safe_when_mcp2515_missing():
    machine.t_reset()
    for pid in (14, 15, 16):
        machine.Pin(pid, machine.Pin.OUT, value=1)
    import esp32.main as em
    with FakeModule("charger", main=lambda board, path: None):
        mptest.raises(OSError, em.run, "none.json")   # no chip on the SPI bus
    mptest.eq([machine.level(p) for p in (14, 15, 16)], [0, 0, 0], "outputs off")


def test_main_safe_when_app_raises():
    b0, m = make()                             # wires the model
    import esp32.main as em
    seen = []

    def app(board, path, console=False):
        seen.append(board)
        o = contract.Outputs()
        o.pwr_en = o.k12 = 1
        board.write_outputs(o)
        machine.set_adc(3, 32768)
        raise ValueError("bug")

    with FakeModule("charger", main=app):
        mptest.raises(ValueError, em.run, "none.json")
    mptest.true(isinstance(seen[0], Esp32Board), "board handed to the app")
    mptest.eq((machine.level(14), machine.level(15)), (0, 0), "safe")


mptest.main(globals())
