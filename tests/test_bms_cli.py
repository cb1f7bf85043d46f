"""The command line on python-can's virtual bus (in-process, short real-time runs).

Only verdicts that do not depend on wall-clock timing are asserted."""
import json
import threading
import time

import can

from host_tools.bms.__main__ import main


def _charger_thread(channel, version, stop, seen):
    bus = can.Bus(interface="virtual", channel=channel)
    try:
        while not stop.is_set():
            bus.send(can.Message(arbitration_id=0x1826F456, data=version, is_extended_id=True))
            end = time.monotonic() + 0.25
            while time.monotonic() < end:
                m = bus.recv(timeout=0.02)
                if m is not None:
                    seen.append(m.arbitration_id)
    finally:
        bus.shutdown()


def _run_with_charger(channel, version, argv):
    stop, seen = threading.Event(), []
    th = threading.Thread(target=_charger_thread, args=(channel, version, stop, seen), daemon=True)
    th.start()
    try:
        rc = main(["--interface", "virtual", "--channel", channel, "--no-live"] + argv)
    finally:
        stop.set()
        th.join(2)
    return rc, seen


def test_list_scenarios(capsys):
    assert main(["--list-scenarios"]) == 0
    out = capsys.readouterr().out
    assert "bcl_timeout" in out and "bsm_pause_resume" in out


def test_short_run_without_a_charger_is_not_run_exit_3(capsys):
    rc = main(["--interface", "virtual", "--channel", "cli_empty", "--duration", "0.2", "--no-live"])
    out = capsys.readouterr().out
    assert rc == 3                                   # nothing could be checked: never a PASS
    assert "NOT RUN: 0 PASS, 0 FAIL" in out and "wait_chm" in out
    assert "cem.unexpected" in out and "PASS" not in out.replace("0 PASS", "")


def test_wrong_chm_version_gives_exit_code_1_and_bhm_is_answered(capsys):
    rc, seen = _run_with_charger("cli_chm_bad", b"\x01\x00\x00",
                                 ["--duration", "0.7", "--period-tol-pct", "90"])
    out = capsys.readouterr().out
    assert rc == 1
    assert any("content.CHM" in line and "FAIL" in line for line in out.splitlines())
    assert 0x182756F4 in seen                              # the simulator answered with BHM


def test_params_file_flags_and_json(tmp_path, capsys):
    pfile = tmp_path / "pack.toml"
    pfile.write_text('chemistry = "NCM"\ncells = 90\nsoc = 20\n[checks]\nperiod_tol_pct = 90\n')
    js = tmp_path / "out.json"
    rc, _ = _run_with_charger("cli_params", b"\x01\x01\x00",
                              ["--params", str(pfile), "--soc", "40", "--scenario", "normal",
                               "--duration", "0.6", "--json", str(js)])
    data = json.loads(js.read_text())
    assert rc == 0, capsys.readouterr().out
    assert data["summary"]["scenario"] == "normal"
    assert data["summary"]["soc"] == 40.0                  # the flag wins over the file
    assert data["summary"]["stage"] == "handshake"
    assert {c["name"]: c["verdict"] for c in data["checks"]}["content.CHM"] == "PASS"
    assert "NCM 90S" in capsys.readouterr().out


def _exit_code(argv):
    try:
        return main(argv)
    except SystemExit as e:                          # argparse errors
        return e.code


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert _exit_code(["--interface", "virtual", "--channel", "cli_bad", "--soc", "150",
                       "--duration", "0.1"]) == 2
    assert "soc / target_soc must be within 0..100 %" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[[action]]\ntype = "drop"\nmessage = "NOPE"\nat_ms = 0\n')
    assert _exit_code(["--interface", "virtual", "--channel", "cli_bad", "--scenario", str(bad)]) == 2
    assert "unknown message" in capsys.readouterr().err
    assert _exit_code(["--chemistry", "XYZ"]) == 2
    assert "unknown chemistry 'XYZ'" in capsys.readouterr().err
    assert main(["--interface", "no_such_interface_xyz", "--channel", "x", "--duration", "0.1"]) == 2
