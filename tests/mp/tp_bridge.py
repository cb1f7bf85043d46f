"""MicroPython side of the J1939 TP interop test (tests/test_interop_j1939.py).

Runs ``gbt.transport.TransportReceiver`` on the real micropython binary and
talks to the host over stdin/stdout, one line per event:

  host -> here:  ``F <t_ms> <id hex> <data hex>``  a received CAN frame
                 ``P <t_ms>``                       run poll()
                 ``Q``                              quit
  here -> host:  ``TX <id hex> <data hex>``         a frame to put on the bus
                 ``RX <pgn hex> <len> <data hex>``  a message completed
                 ``READY``                          receiver constructed

Usage: micropython tp_bridge.py [cts_window]
Not a hot path: this bridge formats strings freely.
"""
import sys
from binascii import hexlify, unhexlify

from gbt.transport import TransportReceiver

_out = sys.stdout


def _send(can_id, buf, n):
    _out.write("TX %08X %s\n" % (can_id, hexlify(bytes(buf[:n])).decode()))
    return True


def main():
    cfg = {}
    if len(sys.argv) > 1:
        cfg["tp.cts_window"] = int(sys.argv[1])
    rx = TransportReceiver(_send, cfg=cfg)
    _out.write("READY\n")
    data = bytearray(8)
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        f = line.split()
        if not f:
            continue
        if f[0] == "Q":
            break
        t = int(f[1])
        if f[0] == "P":
            rx.poll(t)
            continue
        raw = unhexlify(f[3]) if len(f) > 3 else b""
        n = len(raw)
        for i in range(n):
            data[i] = raw[i]
        pgn = rx.on_frame(t, int(f[2], 16), data, n)
        if pgn:
            _out.write("RX %05X %d %s\n" % (
                pgn, rx.length, hexlify(bytes(rx.buf[:rx.length])).decode()))


main()
