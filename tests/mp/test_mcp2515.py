"""MCP2515 driver (boards/esp32/mcp2515.py) against the register-level model
(boards/fakes/mcp2515_model.py) through the fake machine.SPI."""
import sys
sys.path.insert(0, "boards")
import micropython
import machine
import mptest
import board as contract
from mcp2515_model import MCP2515Model, TXB, RXB, EFLG, CANINTF
from esp32.mcp2515 import (MCP2515, bit_timing, MODE_NORMAL, MODE_LOOPBACK,
                           MODE_LISTEN, MODE_CONFIG, STATE_ACTIVE, STATE_WARNING,
                           STATE_PASSIVE, STATE_BUS_OFF, STATE_STOPPED)

CS = 10
INT = 9
BMS = 0x181156F4


def make(osc=8000000, int_pin=False, mode=MODE_NORMAL, filters=None):
    machine.t_reset()
    m = MCP2515Model(osc, int_pin=INT if int_pin else None)
    machine.attach_spi(2, m)
    machine.watch_pin(CS, m.select)
    spi = machine.SPI(2, baudrate=8000000)
    cs = machine.Pin(CS, machine.Pin.OUT, value=1)
    ip = machine.Pin(INT, machine.Pin.IN, machine.Pin.PULL_UP) if int_pin else None
    d = MCP2515(spi, cs, osc_hz=osc, int_pin=ip)
    d.init(mode, filters)
    return d, m


def test_bit_timing_250k_for_8_and_16_mhz():
    mptest.eq(bit_timing(8000000, 250000), (0x00, 0xBC, 0x01), "8 MHz CNF1-3")
    mptest.eq(bit_timing(16000000, 250000), (0x01, 0xBC, 0x01), "16 MHz CNF1-3")
    for osc in (8000000, 16000000, 20000000):
        d, m = make(osc)
        mptest.eq(m.bitrate(), 250000, "bit rate at %d Hz" % osc)
        brp, sjw, prseg, ps1, ps2, ntq = m.timing()
        mptest.true(ps2 >= 2 and prseg + ps1 >= ps2 and sjw <= ps2, "segment rules")
        mptest.true(800 <= m.sample_permille() <= 900, "sample point near 87.5 %")
    mptest.eq(make(16000000)[1].sample_permille(), 875, "16 TQ, sampled at 14")
    mptest.raises(ValueError, bit_timing, 7372800, 250000)


def test_reset_then_init_normal_mode():
    d, m = make()
    mptest.eq(m.mode(), 0, "normal")
    mptest.eq(m.resets, 2, "power-on + RESET instruction")
    mptest.eq(m.regs[RXB[0]] & 0x04, 0x04, "RXB0 rollover enabled")
    mptest.eq(m.regs[0x2B], 0x03, "RX interrupts enabled")
    mptest.eq(m.violations, 0, "no forbidden writes")


def test_init_raises_when_chip_absent():
    machine.t_reset()
    spi = machine.SPI(2)
    cs = machine.Pin(CS, machine.Pin.OUT, value=1)
    d = MCP2515(spi, cs)
    mptest.raises(OSError, d.init)


def test_extended_id_transmit_encoding():
    d, m = make()
    buf = bytearray(b"\xde\xad\xbe\xef\x01\x02\x03\x04")
    ids = (0x1CECF456, 0x1FFFFFFF, 0x00000000, 0x181056F4, 0x0C3FFFFF)
    for i in ids:
        mptest.true(d.send(i, buf, 8), "send %x" % i)
    sent = m.t_sent()
    mptest.eq([s[0] for s in sent], list(ids), "ids on the bus")
    mptest.eq([s[2] for s in sent], [1] * 5, "extended")
    mptest.eq(sent[0][1], bytes(buf), "data")
    d.send(0x1801F456, buf, 0)
    mptest.eq(m.t_sent()[-1][1], b"", "dlc 0")
    mptest.eq(d.send(0x1801F456, buf, 9), False, "dlc 9 refused")
    mptest.eq(m.violations, 0, "no forbidden writes")


def test_three_tx_buffers_keep_send_order():
    d, m = make()
    m.tx_hold = True
    buf = bytearray(8)
    for k in range(3):
        mptest.true(d.send(0x18000000 + k, buf, 1), "buffer %d" % k)
    mptest.eq([m.regs[TXB[k]] & 0x0B for k in range(3)], [0x0B, 0x0A, 0x09],
              "TXREQ with TXP 3, 2, 1")
    mptest.eq(d.send(0x18000009, buf, 1), False, "all three busy")
    m.t_release()
    mptest.eq([s[0] for s in m.t_sent()], [0x18000000, 0x18000001, 0x18000002],
              "chip sends them in send order")
    mptest.true(d.send(0x18000003, buf, 1), "free again")


def test_tx_priority_floor_keeps_order():
    d, m = make()
    m.tx_hold = True
    buf = bytearray(8)
    for k in range(3):
        d.send(0x18000000 + k, buf, 1)
    mptest.eq(m.t_send_one(), 0, "chip sends TXB0 (TXP 3) first")
    mptest.true(d.send(0x18000003, buf, 1), "TXB0 reused")
    mptest.eq(m.regs[TXB[0]] & 3, 0, "at TXP 0, below every pending frame")
    mptest.eq(d.send(0x18000004, buf, 1), False, "no level left: refused, not reordered")
    m.t_release()
    mptest.eq([s[0] for s in m.t_sent()],
              [0x18000000, 0x18000001, 0x18000002, 0x18000003], "send order kept")
    mptest.eq(m.violations, 0, "no forbidden writes")


def test_receive_rollover_and_overflow():
    d, m = make()
    mptest.eq(m.t_inject(BMS, b"\x01"), "RXB0", "first into RXB0")
    mptest.eq(m.t_inject(BMS + 1, b"\x02"), "RXB1", "second rolls over")
    mptest.eq(m.regs[RXB[1]] & 7, 6, "FILHIT = RXF0 rollover")
    mptest.eq(m.t_inject(BMS + 2, b"\x03"), "overflow", "third lost")
    f = contract.CanFrame()
    got = []
    while d.recv_into(f):
        got.append((f.id, f.data[0]))
    mptest.eq(got, [(BMS, 1), (BMS + 1, 2)], "oldest first")
    mptest.eq(m.regs[CANINTF] & 3, 0, "READ RX BUFFER cleared RXnIF")
    out = [0] * 5
    d.counters(out)
    mptest.eq(out[4], 1, "overflow counted")
    mptest.eq(m.regs[EFLG] & 0xC0, 0, "RXnOVR cleared")


def test_filters_and_masks():
    d, m = make(filters=((0x000056F4, 0x0000FFFF),))
    mptest.eq(m.t_inject(0x181156F4, b"\x00"), "RXB0", "to us from the BMS")
    mptest.eq(m.t_inject(0x181157F4, b"\x00"), None, "other destination")
    mptest.eq(m.t_inject(0x6F4, b"\x00", ext=False), None, "standard frame")
    d.recv_into(contract.CanFrame())
    # two pairs: RXB0 gets the first, RXB1 the second
    d.set_filters(((0x000056F4, 0x0000FFFF), (0x00EC0000, 0x00FF0000)))
    mptest.eq(m.mode(), 0, "back in normal mode")
    mptest.eq(m.t_inject(0x1CEC1234, b"\x00"), "RXB1", "second filter -> RXB1")
    mptest.eq(m.regs[RXB[1]] & 7, 2, "FILHIT RXF2")
    mptest.eq(m.violations, 0, "filters written in configuration mode only")
    mptest.raises(ValueError, d.set_filters, ((1, 1), (2, 2), (3, 3)))


def test_remote_frames_dropped():
    d, m = make()
    m.t_inject(BMS, b"\x00\x00", rtr=True)
    mptest.eq(d.recv_into(contract.CanFrame()), False, "RTR not delivered")
    mptest.eq(d.rx_dropped, 1, "counted")


def test_loopback_and_listen_only_modes():
    d, m = make(mode=MODE_LOOPBACK)
    d.send(BMS, bytearray(b"\x05\x06"), 2)
    f = contract.CanFrame()
    mptest.true(d.recv_into(f), "looped back")
    mptest.eq((f.id, f.dlc, f.data[1]), (BMS, 2, 6), "frame")
    mptest.true(d.set_mode(MODE_LISTEN), "listen-only")
    d.send(0x18000001, bytearray(1), 1)
    mptest.eq(len(m.t_sent()), 1, "listen-only does not transmit")
    mptest.eq(m.t_inject(BMS, b"\x07"), "RXB0", "but receives")
    mptest.true(d.set_mode(MODE_CONFIG), "configuration")
    mptest.eq(d.state(), STATE_STOPPED, "stopped in configuration mode")
    mptest.eq(m.t_inject(BMS, b"\x07"), None, "nothing received in configuration mode")


def test_error_counters_and_bus_state():
    d, m = make()
    mptest.eq(d.state(), STATE_ACTIVE, "active")
    m.t_errors(96, 0)
    mptest.eq(d.state(), STATE_WARNING, "warning")
    m.t_errors(10, 130)
    mptest.eq(d.state(), STATE_PASSIVE, "passive (REC)")
    m.t_errors(200, 0)
    mptest.eq(d.state(), STATE_PASSIVE, "passive (TEC)")
    m.t_errors(256, 0)
    mptest.eq(d.state(), STATE_BUS_OFF, "bus-off")
    mptest.eq(STATE_BUS_OFF, contract.CAN_BUS_OFF, "same numbering as firmware/board.py")
    out = [0] * 5
    d.counters(out)
    mptest.eq(out[:2], [255, 0], "TEC, REC")
    d.restart()
    mptest.eq(d.state(), STATE_ACTIVE, "restart re-initialises")


def test_int_pin_drains_before_the_chip_overflows():
    d, m = make(int_pin=True)
    for k in range(6):
        m.t_inject(BMS + k, bytearray([k]))    # each falling INT edge drains
    mptest.eq(d.irqs, 6, "one interrupt per frame")
    f = contract.CanFrame()
    got = []
    while d.recv_into(f):
        got.append(f.data[0])
    mptest.eq(got, [0, 1, 2, 3, 4, 5], "all six, in order")
    mptest.eq(d.hw_overruns + d.overruns, 0, "nothing lost")


def test_interrupt_while_busy_is_deferred():
    d, m = make(int_pin=True, mode=MODE_LOOPBACK)
    # loopback: the frame comes back (INT falls) during send's own SPI writes
    d.send(BMS, bytearray(b"\x42"), 1)
    mptest.eq(d._n, 1, "drained right after send finished")
    mptest.eq(d._busy, 0, "not busy")
    mptest.eq(m.violations, 0, "transactions never interleaved")


def test_ring_overflow_counted():
    d, m = make(int_pin=True)
    for k in range(20):
        m.t_inject(BMS, bytearray([k]))
    mptest.eq(d.overruns, 4, "16-frame ring, 4 dropped")


def test_send_and_recv_allocate_nothing():
    d, m = make(int_pin=True)
    f = contract.CanFrame()
    buf = bytearray(8)
    out = [0] * 5
    micropython.heap_lock()
    try:
        for k in range(4):
            d.send(0x1801F456, buf, 8)
            d.poll()
            d.recv_into(f)
            d.state()
            d.counters(out)
    finally:
        micropython.heap_unlock()
    mptest.eq(d.tx_frames, 4, "sent")
    for k in range(3):
        m.t_inject(BMS + k, buf)       # IRQ drain happens here (outside lock)
    micropython.heap_lock()
    try:
        n = 0
        while d.recv_into(f):
            n += 1
    finally:
        micropython.heap_unlock()
    mptest.eq(n, 3, "received under heap lock")


mptest.main(globals())
