"""``make platform-demo`` end to end, smaller: SIL chargers (the firmware on
the SIL board) publish their telemetry through a TCU to a local mosquitto,
the platform stores and analyses it, the charger with a failing cell
connection is stopped by the platform, the others are not.  By default over
the authenticated link (issue 13, C-2: sealed telemetry, sealed stop), with
``--plain`` as before it (plain topic)."""
import json

import pytest

from host_tools.platform import cli


@pytest.mark.parametrize("mode", ["c2-sealed", "plain"])
def test_demo_two_sil_chargers(tmp_path, mode):
    out = tmp_path / "demo"
    rc = cli.main(["demo", "--chargers", "2", "--history-days", "24", "--out", str(out),
                   "--offline-s", "20"] + (["--plain"] if mode == "plain" else []))
    s = json.loads((out / "summary.json").read_text())
    assert rc == 0 and s["ok"], s
    ch = {c["charger_id"]: c for c in s["chargers"]}
    clean, faulty = ch[1001], ch[1002]
    assert clean["offline"] and clean["records"] > 1000
    for c in (clean, faulty):
        assert c["stored"] == c["records"] and c["gaps"] == 0      # catch-up, exactly once
    assert clean["alarms"] == 0 and not clean["stops"]
    if mode == "plain":
        assert faulty["alarms"] >= 1 and faulty["stops"]
        assert faulty["stops"][0]["auth"].startswith("none")
        assert "stop() typed" in faulty["results"][0]["result"]
        assert not faulty["link_sealed"]
    else:
        # the sealed telemetry was stored exactly once (above), the stop went sealed
        assert clean["link_sealed"] and faulty["link_sealed"]
        assert faulty["alarms"] >= 1 and not faulty["stops"], "no plain stop"
        assert faulty["stop_auth"].startswith("sealed") and faulty["sealed_commands"] == 1
        assert faulty["results"] == [{"cmd": "sealed", "result": "stopped",
                                      "auth": faulty["stop_auth"]}]
        assert not clean["link_refused"] and not faulty["link_refused"]
    assert faulty["stage"] == "done"
    assert faulty["firmware_stop"] == ["stop operator stop"]     # the platform stopped it, not S-8
    al = [a for a in s["alarms"] if a["charger_id"] == 1002]
    assert al[0]["rule"] == "A-1" and al[0]["metric"] == "spread_v" and al[0]["scope"] == "vehicle"
    assert (out / "report" / "alarms.txt").exists()
    assert any(f.endswith(".png") for f in s["files"])
