"""Battery-pack model: OCV curves, SOC integration, CC-CV demand, thermal model."""
import pytest

from host_tools.bms.battery import CHEMISTRIES, BatteryPack, cc_cv_demand


@pytest.mark.parametrize("name", sorted(CHEMISTRIES))
def test_ocv_strictly_increasing_and_in_range(name):
    ch = CHEMISTRIES[name]
    vs = [ch.open_circuit(s / 2) for s in range(0, 201)]
    assert all(b > a for a, b in zip(vs, vs[1:]))
    assert vs[-1] < ch.max_v                    # a full cell at rest is below the charge limit
    assert ch.open_circuit(105) > vs[-1]        # over-charge keeps rising (extrapolated)


def test_lfp_plateau_flatter_than_ncm():
    lfp, ncm = CHEMISTRIES["LFP"], CHEMISTRIES["NCM"]
    assert lfp.open_circuit(70) - lfp.open_circuit(30) < 0.1
    assert ncm.open_circuit(70) - ncm.open_circuit(30) > 0.2


def test_soc_integration_half_c_for_one_hour():
    pack = BatteryPack("NCM", capacity_ah=100, cells=10, soc=20, soc_spread_pct=0, capacity_spread_pct=0)
    for _ in range(3600):
        pack.step(1.0, 50.0)
    assert pack.soc == pytest.approx(70.0, abs=1e-6)
    assert pack.charged_ah == pytest.approx(50.0)
    assert pack.energy_kwh == pytest.approx(50 * pack.terminal_voltage(0) / 1000, rel=0.1)


def test_terminal_voltage_includes_ir_drop():
    pack = BatteryPack("LFP", capacity_ah=100, cells=100, soc=50, resistance_ohm=0.1)
    assert pack.terminal_voltage(100.0) - pack.terminal_voltage(0.0) == pytest.approx(10.0, rel=0.01)
    assert len(pack.cell_voltages()) == 100


def test_cell_spread_is_seeded_and_deterministic():
    a = BatteryPack("LFP", cells=50, soc=97, seed=7).cell_voltages()
    b = BatteryPack("LFP", cells=50, soc=97, seed=7).cell_voltages()
    c = BatteryPack("LFP", cells=50, soc=97, seed=8).cell_voltages()
    assert a == b and a != c
    assert max(a) - min(a) > 0.005             # a visible spread at the steep end of the curve
    assert BatteryPack("LFP", cells=50, soc=90, seed=7).soc == pytest.approx(90.0)


def test_cc_then_cv_taper_keeps_cells_at_limit():
    pack = BatteryPack("NCM", capacity_ah=50, cells=20, soc=60, soc_spread_pct=2)
    limit = 4.20
    modes, currents = [], []
    for _ in range(4000):
        i, cv = cc_cv_demand(pack, 50.0, limit)
        modes.append(cv)
        currents.append(i)
        pack.step(1.0, i)
        assert max(pack.cell_voltages()) <= limit + 1e-3   # one step of lag at most
    first_cv = modes.index(True)
    assert first_cv > 10 and all(c == 50.0 for c in currents[:first_cv])      # CC first
    assert all(modes[first_cv:])                                             # then CV
    tail = currents[first_cv:]
    assert tail[-1] < 5.0 and all(b <= a + 1e-9 for a, b in zip(tail, tail[1:]))  # monotonic taper


def test_temperature_rises_with_i2r_and_cools_to_ambient():
    pack = BatteryPack("LFP", capacity_ah=100, cells=50, soc=20, ambient_c=25, probes=6)
    for _ in range(600):
        pack.step(1.0, 200.0)
    hot = pack.temp_c
    assert hot > 26.0
    assert len(pack.temperatures()) == 6 and max(pack.temperatures()) > min(pack.temperatures())
    for _ in range(600):
        pack.step(60.0, 0.0)
    assert pack.temp_c == pytest.approx(25.0, abs=0.2)


def test_bad_arguments():
    with pytest.raises(ValueError):
        BatteryPack("NIZN")
    with pytest.raises(ValueError):
        BatteryPack("LFP", cells=0)
