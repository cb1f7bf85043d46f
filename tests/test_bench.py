"""Smoke test of the ``make bench`` machinery: the STATS snapshot of the SIL
link and one short figure, with numbers (it fails if a figure is missing or
empty, so it cannot pass silently)."""
import json

from host_tools import bench
from host_tools.sil import Simulation


def test_stats_snapshot_counts_and_resets(tmp_path):
    with Simulation(state_dir=str(tmp_path / "s")) as sim:
        sim.run_for(10)
        sim.stats(reset=True)
        sim.run_for(100)                       # 100 simulated ms: passes at 12..110
        st = sim.stats(reset=True)
        t = st["tasks"]
        assert set(t) >= {"protect", "can", "session", "records", "checks", "slow"}
        assert t["protect"]["runs"] == 20      # 5 ms period (sched.protect_ms)
        assert t["session"]["runs"] == 10      # 10 ms period
        assert 0 < t["protect"]["total_us"] <= st["loop_us"]
        assert st["passes"] > 0 and st["pass_wcet_us"] > 0
        assert st["mem_alloc"] > 0 and st["t_ms"] == 110
        sim.run_for(20)
        again = sim.stats()
        assert again["tasks"]["protect"]["runs"] == 4    # counted from the reset


def test_quick_cpu_figure_has_numbers(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = bench.main(["--quick", "--only", "cpu", "--out", str(out)])
    res = json.loads(out.read_text())
    assert rc == 0, res["errors"]
    f = res["figures"]
    for g in ("handshake", "charging", "end"):
        s = f["cpu"]["stages"][g]
        assert s["cpu_us_per_s"] > 0
        assert "est_mcu_load_pct" not in s          # the x55 estimate is retired
    ch = f["cpu"]["stages"]["charging"]
    assert ch["tasks_us_per_s"]["protect"] > 0
    assert "--target qemu" in f["cpu"]["note"]
    p = f["passes"]
    assert p["pass_wcet_us"] > 0 and "est_mcu_us" not in p
    assert p["task_wcet_us"]["session"] > 0   # steady charging seconds were measured
    text = capsys.readouterr().out
    assert "CPU, charging stage" in text and "x 55" not in text and "--target qemu" in text
