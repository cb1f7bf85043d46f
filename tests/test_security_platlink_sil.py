"""Issue 13, C-2 end to end through the SIL: the firmware (unix micropython,
the real app with its scheduler) with the platform link in service, a GB/T
27930 vehicle from the BMS simulator, and the platform's end of the link
(``host_tools.platform.seclink.PlatformEndpoint``, written on gmssl /
pycryptodomex / CPython hmac).  The TCU's part is played here: link frames
from the SIL telemetry channel go to the endpoint, what the endpoint sends
back is typed at the firmware's console as ``link("<hex>")`` (the TCU's
relay on a board); tests/platform/test_platform_demo.py runs the link
through mosquitto, the TCU and the ingest.

What a user would notice: sealed telemetry opens on the platform and holds
the charger's records; a sealed stop stops a charging session; a forged,
replayed or tampered stop (and, under require, a plain one) stops nothing
and is an intrusion event; with the link off or without keys a plain
vehicle still charges."""
import json
import os
import time

import pytest

from host_tools import seckeys
from host_tools.bms.battery import BatteryPack
from host_tools.bms.params import BmsParams
from host_tools.bms.simulator import BmsSimulator
from host_tools.platform import seclink as S
from host_tools.platform.sil import Terminal
from host_tools.sil import Plant, Simulation
from host_tools.telemetry import decode_record


class Site:
    """One charger with its link, one vehicle, the platform's endpoint."""

    def __init__(self, tmp, policy="prefer", suite="aes", keys=True, extra=None):
        board = tmp / "board"
        board.mkdir()
        self.keys = None
        if keys:
            seckeys.new_keys(board / "keys.json", charger_id=21)
            self.keys = S.load_platform_keys(board / "keys.platform.json")
        cfg = {"charger.id": 21, "sec.policy": policy, "sec.suite": suite,
               "console.tx_timeout_ms": 1000}
        cfg.update(extra or {})
        (tmp / "config.json").write_text(json.dumps(cfg))
        self.p = BmsParams(capacity_ah=20, cells=96, soc=50, target_soc=95, vin="LC2TESTVIN0000021").resolved()
        pack = BatteryPack(self.p.chemistry, self.p.capacity_ah, self.p.cells, self.p.soc)
        master, slave = os.openpty()
        self.sim = Simulation(plant=Plant(pack), console_fd=master, config=str(tmp / "config.json"),
                              state_dir=str(tmp / "state"), board_dir=str(board))
        os.close(master)
        self.sim.unplug()                 # the handshake runs between sessions
        self.term = Terminal(slave)
        self.pack = pack
        self.bms = None
        self.ep = S.PlatformEndpoint(self.keys) if keys else None
        self.fed = 0
        self.up = []          # (what, value) of every link frame the platform took
        self.plain = []       # plain records that reached the "TCU"
        self.frames = []      # link frames as they left the charger
        self.records = []     # the records the platform opened from sealed batches

    def relay(self):
        tel = self.sim.telemetry
        while self.fed < len(tel):
            rec = bytes(tel[self.fed][1])
            self.fed += 1
            if rec[0] != S.LINK_MAGIC:
                self.plain.append(rec)
                continue
            self.frames.append(rec)
            what, val, ans = self.ep.uplink(rec[2:])
            if what == "telemetry":
                recs = S.split_records(val)
                assert len(recs) == rec[1], "the envelope's count is the batch's"
                self.records += recs
            self.up.append((what, val))
            if ans is not None:
                self.down(ans)

    def down(self, frame):
        self.term.type('link("%s")' % frame.hex())

    def type(self, line, ms=300):
        self.term.take()
        self.term.type(line)
        out = ""
        for _ in range(ms // 10):
            self.step()
            time.sleep(0.001)
            out += self.term.take().decode(errors="replace")
        return out

    def step(self):
        self.sim.step()
        if self.ep is not None:
            self.relay()

    def run(self, ms, until=None):
        end = self.sim.now_ms + ms
        while self.sim.now_ms < end:
            self.step()
            if until is not None and until():
                return True
        return until is None

    def stage(self):
        st = [t for _, t in self.sim.texts if t.startswith("stage ")]
        return st[-1][6:] if st else None

    def texts(self, prefix):
        return [t for _, t in self.sim.texts if t.startswith(prefix)]

    def seal_up(self, ms=20_000):
        assert self.run(ms, lambda: self.ep.sealed), (self.up, self.type("platlink()"))

    def plug(self):
        # the vehicle's BMS wakes up when plugged in (its timeouts run from then)
        self.bms = BmsSimulator(self.sim.bus(), self.p, pack=self.pack, drive_pack=False)
        self.sim.step_hooks.append(self.bms.poll)
        self.sim.plug()

    def charge(self):
        self.plug()
        assert self.run(30_000, lambda: self.stage() == "charging"), self.sim.texts[-10:]

    def close(self):
        self.sim.close()
        self.term.close()


@pytest.fixture
def site_factory(tmp_path):
    made = []

    def make(**kw):
        d = tmp_path / ("site%d" % len(made))
        d.mkdir()
        s = Site(d, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


@pytest.mark.parametrize("suite", ["aes", "sm"])
def test_c2_sil_sealed_telemetry_reaches_the_platform_and_a_sealed_stop_stops(site_factory, suite):
    s = site_factory(suite=suite, policy="require")
    s.seal_up(90_000 if suite == "sm" else 5_000)
    s.charge()
    s.run(3_000)
    # every record since the link came up arrived sealed, intact, in order
    assert not s.plain, "nothing plain leaves under require"
    dec = [decode_record(r) for r in s.records]
    assert len(dec) > 40
    seqs = [d["seq"] for d in dec]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no record lost or reordered"
    assert {d["type_name"] for d in dec} >= {"demand", "status"}
    assert all(d["charger_id"] == 21 for d in dec)
    assert all(f[0] == S.LINK_MAGIC for f in s.frames)
    assert not any(b"LC2TESTVIN" in f for f in s.frames), "the VIN travels encrypted"
    # the platform's sealed stop ends the session normally
    s.down(s.ep.seal_stop())
    assert s.run(15_000, lambda: s.stage() in ("done", "stopping", "statistics", "finish"))
    assert s.run(15_000, lambda: ("result", "stopped") in s.up), s.up[-5:]
    assert s.texts("platform stop")
    assert any(t.startswith("stop ") and "operator" in t for t in s.texts("stop ")), s.texts("stop")


def test_c2_sil_forged_replayed_tampered_and_plain_stops_refused_under_require(site_factory):
    s = site_factory(policy="require")
    s.seal_up(5_000)
    s.charge()
    older = s.ep.seal_stop()                                   # never delivered, then too old
    replay_source = s.ep.seal_vin("LC2TESTVIN0000021")      # delivered, then replayed
    s.down(replay_source)
    s.run(500)
    assert ("result", "vin LC2TESTVIN0000021") in s.up
    tampered = bytearray(s.ep.seal_stop())
    tampered[14] ^= 0x04
    stranger = S.RecordLayer(2, (os.urandom(16), os.urandom(32)), (os.urandom(16), os.urandom(32)))
    for bad in (bytes(tampered), replay_source, older, stranger.seal(2, b"stop"), older[:20]):
        s.down(bad)
        s.run(300)
    out = s.type("pstop()")
    assert "refused: sec.policy require: sealed stop only" in out
    s.run(2_000)
    assert s.stage() == "charging", "none of them stopped the session"
    ix = s.texts("intrusion platform link")
    assert [t.split()[3] for t in ix] == ["0x22", "0x23", "0x23", "0x22", "0x21", "0x24"], ix
    st = s.type("platlink()")
    assert "refused sealed frames: short 1, tag 2, replay 2" in st, st
    assert "stops 0, VIN authorisations 1, refused 6" in st, st
    # a genuine, fresh stop still works after all that
    s.down(s.ep.seal_stop())
    assert s.run(15_000, lambda: s.stage() != "charging")


def test_c2_sil_plain_stop_obeyed_under_prefer_and_without_keys_telemetry_plain(site_factory):
    s = site_factory(policy="prefer", keys=False)
    s.charge()
    out = s.type("cfg(\"sec.policy\")")
    assert "prefer" in out
    assert "NameError" in s.type("platlink()"), "no link without keys under prefer"
    s.run(1_000)
    assert s.sim.telemetry and all(r[0] == 0xA5 for _, r in s.sim.telemetry), "records plain"
    # (no link in service: the TCU types the plain stop as before)
    s.type("stop()")
    assert s.run(15_000, lambda: s.stage() != "charging")
    p = site_factory(policy="prefer")
    p.charge()                                 # plugged before the handshake: no link yet
    out = p.type("pstop()")
    assert "stop requested (plain platform stop)" in out
    assert p.run(15_000, lambda: p.stage() != "charging")


@pytest.mark.parametrize("policy", ["off", "require"])
def test_c2_sil_plain_vehicle_charges_with_the_link_off_or_without_keys(site_factory, policy):
    s = site_factory(policy=policy, keys=False)
    s.charge()
    s.run(2_000)
    assert s.stage() == "charging"
    if policy == "require":
        assert not s.sim.telemetry or all(r[0] != 0xA5 for _, r in s.sim.telemetry[-5:]), \
            "require without keys: no record leaves unsealed"
        assert "held" in s.type("platlink()")
        assert s.texts("intrusion platform link 0x26")
    else:
        assert s.sim.telemetry[-1][1][0] == 0xA5


def test_c2_sil_vin_authorisation_only_sealed_under_require(site_factory):
    s = site_factory(policy="require", extra={"sec.vin_auth": 1})
    s.seal_up(5_000)
    out = s.type('pvin("LC2TESTVIN0000021")')
    assert "refused: sec.policy require: sealed authorisation only" in out
    s.plug()
    s.run(15_000, lambda: s.texts("refused VIN"))
    assert any("not authorised by the platform" in t for t in s.texts("refused")), s.sim.texts[-8:]
    assert "charging" not in [t[6:] for t in s.texts("stage ")]
    a = site_factory(policy="require", extra={"sec.vin_auth": 1})
    a.seal_up(5_000)
    a.down(a.ep.seal_vin("LC2TESTVIN0000021"))
    a.run(500)
    assert ("result", "vin LC2TESTVIN0000021") in a.up
    a.charge()


def test_c2_sil_link_rekeys_between_sessions_only(site_factory):
    """sec.rekey_s: new session keys by a new handshake once the keys are
    that old, never while a session is in progress; the old keys seal until
    the new handshake finishes, so the platform opens every frame and no
    record is lost or reordered across the change."""
    s = site_factory(policy="require", extra={"sec.rekey_s": 20})
    s.seal_up(5_000)

    def keyed():
        return sum(1 for u in s.up if u[0] == "up")
    assert keyed() == 1
    s.charge()
    s.run(25_000)
    assert s.stage() == "charging" and keyed() == 1, "no handshake while charging"
    s.down(s.ep.seal_stop())
    assert s.run(15_000, lambda: s.stage() == "done")
    assert s.run(15_000, lambda: keyed() == 2), s.up[-5:]
    n = len(s.records)
    s.run(3_000)
    assert len(s.records) > n, "telemetry sealed with the new keys opens"
    assert not [u for u in s.up if u[0] == "refused"], "no frame refused across the re-key"
    seqs = [decode_record(r)["seq"] for r in s.records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no record lost or reordered"
    assert "handshakes finished 2, failures 0" in s.type("platlink()")
