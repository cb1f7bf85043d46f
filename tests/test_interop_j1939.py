"""Interoperability: our TransportReceiver against a J1939 stack we did not write.

The third-party ``can-j1939`` package (import ``j1939``) plays the BMS at
0xF4 and sends BRM (49 bytes), BCP (13) and BCS (9) to the charger 0x56
with *its own* J1939-21 transport code (RTS, then TP.DT per CTS window,
closed by our EndOfMsgAck).  Our receiver runs on the real ``micropython``
binary (tests/mp/tp_bridge.py); this file bridges its stdin/stdout to a
python-can ``virtual`` bus shared with the can-j1939 ECU.

What is checked:
  * the charger side delivers every message byte-exact;
  * every frame we put on the bus is an exact CTS / EndOfMsgAck / Abort;
  * can-j1939 accepts them: its send buffer closes (EndOfMsgAck or our
    Abort processed) and it never sends an Abort (it would after T3 if it
    did not accept our answers, or on a CTS it cannot match);
  * its RTS/CTS path is really used: several CTS windows per message.

Simulated time in the bridge advances 1 ms per frame, so our J1939 timers
never fire by accident; nothing asserts on wall-clock time.  Waits are
bounded (a few seconds only if something is broken).
"""
import os
import queue
import subprocess
import threading
import time
import uuid

import can
import j1939
import pytest

from conftest import MP_TESTS, micropython_bin, mp_path

CHARGER = 0x56
BMS = 0xF4
ID_CM_TX = 0x1CECF456       # charger -> BMS TP.CM
ID_CM_RX = 0x1CEC56F4       # BMS -> charger TP.CM
ID_DT_RX = 0x1CEB56F4

# Payloads shaped like the GB/T messages (values do not matter to TP, but
# make every byte distinct enough that a misplaced packet shows).
BRM = bytes([0x01, 0x01, 0x00, 0x03, 0xE8, 0x03, 0x10, 0x0E]) + \
    bytes((0x20 + 3 * i) & 0xFF for i in range(41))
BCP = bytes([0x5E, 0x01, 0xD0, 0x07, 0x10, 0x27, 0x40, 0x1F, 0x5A, 0xF4, 0x01, 0x80, 0x0C])
BCS = bytes([0x80, 0x0C, 0x6C, 0x0F, 0x5E, 0x01, 0x32, 0x3C, 0x00])
assert (len(BRM), len(BCP), len(BCS)) == (49, 13, 9)

WAIT_S = 5.0


class MpBridge:
    """micropython tp_bridge.py <-> python-can virtual bus."""

    def __init__(self, channel, window=None):
        self.bus = can.Bus(interface="virtual", channel=channel)
        cmd = [micropython_bin(), str(MP_TESTS / "tp_bridge.py")]
        if window is not None:
            cmd.append(str(window))
        env = dict(os.environ, MICROPYPATH=mp_path())
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.t_ms = 0
        self.rx = queue.Queue()          # completed messages (pgn, bytes)
        self.from_bms = []               # frames can-j1939 put on the bus
        self.to_bms = []                 # frames our receiver put on the bus
        self.lock = threading.Lock()
        self.running = True
        assert self.proc.stdout.readline().strip() == "READY", self.proc.stderr.read()
        self.t_in = threading.Thread(target=self._pump_in, daemon=True)
        self.t_out = threading.Thread(target=self._pump_out, daemon=True)
        self.t_in.start()
        self.t_out.start()

    def _pump_in(self):
        while self.running:
            msg = self.bus.recv(0.01)
            if msg is None or not msg.is_extended_id:
                continue
            with self.lock:
                self.from_bms.append((msg.arbitration_id, bytes(msg.data)))
            self.t_ms += 1
            try:
                self.proc.stdin.write("F %d %X %s\n" % (self.t_ms, msg.arbitration_id,
                                                        bytes(msg.data).hex()))
                self.proc.stdin.write("P %d\n" % self.t_ms)
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return

    def _pump_out(self):
        for line in self.proc.stdout:
            f = line.split()
            if not f:
                continue
            if f[0] == "TX":
                cid, data = int(f[1], 16), bytes.fromhex(f[2])
                with self.lock:
                    self.to_bms.append((cid, data))
                self.bus.send(can.Message(arbitration_id=cid, data=data, is_extended_id=True))
            elif f[0] == "RX":
                self.rx.put((int(f[1], 16), bytes.fromhex(f[3]) if len(f) > 3 else b""))

    def get(self):
        return self.rx.get(timeout=WAIT_S)

    def close(self):
        self.running = False
        self.t_in.join(1)
        try:
            self.proc.stdin.write("Q\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.t_out.join(1)
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        self.bus.shutdown()
        return err


@pytest.fixture
def link():
    """Factory: (can-j1939 ECU as BMS, our bridge) on a fresh virtual channel."""
    made = []

    def make(max_cmdt_packets=1, window=None):
        channel = "tp-interop-" + uuid.uuid4().hex
        br = MpBridge(channel, window)
        ecu = j1939.ElectronicControlUnit(max_cmdt_packets=max_cmdt_packets)
        # = ecu.connect(interface="virtual", channel=channel), but with a
        # 10 ms notifier poll instead of 1 s so teardown does not wait 1 s
        ecu._bus = can.Bus(interface="virtual", channel=channel)
        ecu._notifier = can.Notifier(ecu._bus, ecu._listeners, 0.01)
        # accept frames addressed to 0xF4 (our CTS / EndOfMsgAck / Abort)
        ecu.subscribe(lambda *a: None, device_address=BMS)
        made.append((ecu, br))
        return ecu, br

    yield make
    for ecu, br in made:
        ecu.disconnect()
        ecu.stop()
        err = br.close()
        assert "Traceback" not in err, err


def send(ecu, pf, payload):
    """can-j1939 sends a PDU1 PG from the BMS to the charger (TP when > 8)."""
    assert ecu.send_pgn(0, pf, CHARGER, 7, BMS, list(payload)) is True


def wait_closed(ecu):
    """can-j1939's send buffer for 0xF4 -> 0x56 closes once it processed our
    EndOfMsgAck (or Abort); on T3 expiry it would Abort instead."""
    end = time.monotonic() + WAIT_S
    while time.monotonic() < end:
        if not ecu.j1939_dll._snd_buffer:
            return
        # can-j1939 marks the buffer finished on a received Abort but does
        # not wake its job thread (it would only look again at its T3
        # deadline): a no-op timer wakes it.  If our Abort had not been
        # accepted, the buffer would still be WAITING_CTS and can-j1939
        # would send its own Abort at T3, which check_clean() rejects.
        ecu.add_timer(0.001, lambda cookie: False)
        time.sleep(0.005)
    pytest.fail("can-j1939 kept its TP session open: our answer was not accepted")


def cm_frames(frames, ctrl):
    return [d for cid, d in frames if cid == ID_CM_TX and d[0] == ctrl]


def check_clean(br):
    with br.lock:
        bms = list(br.from_bms)
        ours = list(br.to_bms)
    assert not [d for cid, d in bms if cid == ID_CM_RX and d[0] == 0xFF], \
        "can-j1939 aborted: %r" % bms
    for cid, d in ours:
        assert cid == ID_CM_TX and len(d) == 8, (hex(cid), d)
    return bms, ours


def test_brm_with_can_j1939_default_one_packet_per_cts(link):
    # can-j1939's default: RTS byte 5 = 1 packet per CTS -> we must honour it
    ecu, br = link(max_cmdt_packets=1)
    send(ecu, 0x02, BRM)
    assert br.get() == (0x0200, BRM)
    wait_closed(ecu)
    bms, ours = check_clean(br)
    rts = [d for cid, d in bms if cid == ID_CM_RX and d[0] == 0x10]
    assert rts == [bytes.fromhex("1031000701000200")]
    cts = cm_frames(ours, 0x11)
    assert cts == [bytes([0x11, 1, k, 0xFF, 0xFF, 0x00, 0x02, 0x00]) for k in range(1, 8)]
    assert cm_frames(ours, 0x13) == [bytes.fromhex("13310007ff000200")]
    assert len([1 for cid, _ in bms if cid == ID_DT_RX]) == 7


def test_bcp_and_bcs_single_window(link):
    ecu, br = link(max_cmdt_packets=255)
    send(ecu, 0x06, BCP)
    assert br.get() == (0x0600, BCP)
    wait_closed(ecu)
    send(ecu, 0x11, BCS)
    assert br.get() == (0x1100, BCS)
    wait_closed(ecu)
    bms, ours = check_clean(br)
    assert cm_frames(ours, 0x11) == [bytes.fromhex("110201ffff000600"),
                                     bytes.fromhex("110201ffff001100")]
    assert cm_frames(ours, 0x13) == [bytes.fromhex("130d0002ff000600"),
                                     bytes.fromhex("13090002ff001100")]
    # last packets padded with 0xFF by can-j1939; we deliver only the payload
    dts = [d for cid, d in bms if cid == ID_DT_RX]
    assert dts[1] == bytes([2]) + BCP[7:] + b"\xff"
    assert dts[3] == bytes([2, 0x3C, 0x00]) + b"\xff" * 5


def test_brm_bcp_bcs_with_our_window_of_two(link):
    # our CTS window (2) is smaller than can-j1939's limit: re-CTS per window
    ecu, br = link(max_cmdt_packets=255, window=2)
    for pf, payload in ((0x02, BRM), (0x06, BCP), (0x11, BCS)):
        send(ecu, pf, payload)
        assert br.get() == (pf << 8, payload)
        wait_closed(ecu)
    bms, ours = check_clean(br)
    cts = cm_frames(ours, 0x11)
    assert [(d[1], d[2]) for d in cts if d[6] == 0x02] == [(2, 1), (2, 3), (2, 5), (1, 7)]
    assert [(d[1], d[2]) for d in cts if d[6] != 0x02] == [(2, 1), (2, 1)]
    assert len(cm_frames(ours, 0x13)) == 3


def test_abort_for_pgn_not_allowed_is_accepted(link):
    # DM1 (PGN 0x2000) is not a TP message the charger takes: Abort(250),
    # can-j1939 drops its session at once (no T3 timeout Abort) and the next
    # message goes through.
    ecu, br = link(max_cmdt_packets=255)
    send(ecu, 0x20, bytes(range(20)))
    wait_closed(ecu)
    send(ecu, 0x02, BRM)
    assert br.get() == (0x0200, BRM)
    wait_closed(ecu)
    bms, ours = check_clean(br)
    assert cm_frames(ours, 0xFF) == [bytes.fromhex("fffaffffff002000")]
    # can-j1939 sent nothing for DM1 after our Abort: RTS, then BRM's RTS
    assert bms[0] == (ID_CM_RX, bytes.fromhex("1014000303002000"))
    assert bms[1] == (ID_CM_RX, bytes.fromhex("1031000707000200"))
