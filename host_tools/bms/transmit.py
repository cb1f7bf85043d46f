"""The BMS simulator's transmit side: what is due, field values, scenario
overrides on the way out, single frames and the one RTS/CTS channel.

A mixin of ``BmsSimulator`` (host_tools/bms/simulator.py), which owns the
state it reads (stage, parameters, pack, scenario, recorder)."""
from __future__ import annotations

from typing import Any, Dict, Optional

import can

from . import codec
from .tp import TpFault, TransferRecord

# Which TP message goes first when several are waiting for the one RTS/CTS channel.
_TP_PRIORITY = ("BRM", "BCP", "BCS", "BMV", "BMT", "BSP")
_STAGE_MESSAGES = {
    "handshake": ("BHM",), "recognition": ("BRM",), "config": ("BCP", "BRO"),
    "charging": ("BCL", "BCS", "BSM", "BMV", "BMT"), "stopping": ("BST",), "statistics": ("BSD",),
    "error": ("BEM",),
}


class Transmitter:
    def _send_due(self, now: int) -> None:
        for name in _STAGE_MESSAGES.get(self.stage, ()):
            if name == "BCP" and self._cml_ms is not None:
                self._config_bro(now)
                continue
            if name == "BRO":
                continue
            if name == "BMV" and not self.p.send_bmv or name == "BMT" and not self.p.send_bmt:
                continue
            due = self._due.get(name)
            if due is None or now < due:
                continue
            period = codec.MESSAGES[name].period_ms
            self._due[name] = due + period if now - due < period else now + period
            self._send(now, name, self._fields(name, now))
            if name == "BRM" and self._first_brm_ms is None:
                self._first_brm_ms = now

    def _config_bro(self, now: int) -> None:
        """After CML: BRO 0x00 for ``bro_delay_ms``, then 0xAA, every 250 ms."""
        due = self._due.get("BRO", now)
        if now < due:
            return
        self._due["BRO"] = due + 250 if now - due < 250 else now + 250
        ready = now - self._cml_ms >= self.p.bro_delay_ms
        if ready and self._bro_aa_ms is None:
            self._bro_aa_ms = now
        self._send(now, "BRO", {"value": 0xAA if ready else 0x00})

    def _fields(self, name: str, now: int) -> Dict[str, Any]:
        p, pk = self.p, self.pack
        if name == "BHM":
            return {"max_voltage_v": p.bhm_max_voltage_v}
        if name == "BRM":
            return {"version": p.version_int(), "battery_type": p.battery_type, "capacity_ah": p.capacity_ah,
                    "rated_voltage_v": p.rated_voltage_v, "manufacturer": p.manufacturer, "vin": p.vin,
                    "cycles": 0, "length": p.brm_length}
        if name == "BCP":
            return {"max_cell_voltage_v": p.max_cell_voltage_v, "max_current_a": p.max_current_a,
                    "energy_kwh": p.energy_kwh, "max_voltage_v": p.max_voltage_v, "max_temp_c": p.max_temp_c,
                    "soc_pct": pk.soc, "voltage_v": pk.terminal_voltage(0.0)}
        if name == "BCL":
            cell_lim = p.max_cell_voltage_v - p.cv_margin_v
            return {"voltage_v": min(p.max_voltage_v, p.cells * cell_lim), "current_a": self._demand,
                    "mode": 1 if self._in_cv else 2}
        cells = pk.cell_voltages()
        temps = pk.temperatures()
        if name == "BCS":
            i = pk.current_a
            rem = 600 if i <= 1 else (p.target_soc - pk.soc) / 100.0 * p.capacity_ah / i * 60.0
            return {"voltage_v": pk.terminal_voltage(), "current_a": i, "max_cell_v": max(cells),
                    "max_cell_group": 0, "soc_pct": pk.soc, "remaining_min": max(0, min(600, rem))}
        if name == "BSM":
            tmax, tmin = max(temps), min(temps)
            f = {"max_cell_no": cells.index(max(cells)) + 1, "max_temp_c": tmax,
                 "max_temp_no": temps.index(tmax) + 1, "min_temp_c": tmin, "min_temp_no": temps.index(tmin) + 1,
                 "cell_voltage": 1 if max(cells) > p.max_cell_voltage_v else 0,
                 "overtemp": 1 if tmax > p.max_temp_c else 0, "permit": 0 if self._paused else 1}
            return f
        if name == "BMV":
            return {"cells": cells}
        if name == "BMT":
            return {"temps": temps}
        if name == "BST":
            return dict(self._bst)
        if name == "BSD":
            return {"soc_pct": pk.soc, "min_cell_v": min(cells), "max_cell_v": max(cells),
                    "min_temp_c": min(temps), "max_temp_c": max(temps)}
        if name == "BEM":
            return {"bits": self._bem_bits}
        return {}

    def _send(self, now: int, name: str, fields: Dict[str, Any]) -> None:
        """Encode ``name`` and apply the scenario's drop / override / malformed / delay."""
        if self._active("drop", name, now):
            for a in self._active("drop", name, now):
                a.used += 1
            return
        # The "bsm" action has no message name: look it up without one.
        if name == "BSM":
            for a in self.scenario.of("bsm"):
                if a.window(now, self.t0, self.stage_entry):
                    a.used += 1
                    fields = {**fields, **a.opts.get("bits", {})}
                    if a.fired_ms is None:
                        a.fired_ms = now
                        bad = [k for k, v in a.opts.get("bits", {}).items() if k != "permit" and v == 1]
                        if bad:
                            self.rec.event(now, "bsm_abnormal", what="_".join(bad))
        overrides = self._active("override", name, now)
        for a in overrides:
            if a.opts.get("fields"):
                fields = {**fields, **a.opts["fields"]}
        payload = codec.encode(name, fields)
        for a in overrides:
            a.used += 1
            a.fired_ms = a.fired_ms if a.fired_ms is not None else now
            payload = codec.apply_bytes(payload, a.opts.get("raw"), a.opts.get("set_bytes"))
        for a in self._active("malformed", name, now):
            a.used += 1
            a.fired_ms = a.fired_ms if a.fired_ms is not None else now
            if a.opts.get("garbage"):
                payload = bytes(self._rng.randrange(256) for _ in payload)
            if a.opts.get("dlc") is not None:
                n = int(a.opts["dlc"])
                payload = payload[:n] + b"\xff" * max(0, n - len(payload))
        self._transmit(now, name, payload)

    def _transmit(self, now: int, name: str, payload: bytes) -> None:
        d = codec.MESSAGES[name]
        if d.tp and len(payload) > 8:
            self._tp_pending[name] = payload
            self._start_pending_tp(now)
            return
        delay = [a for a in self._active("delay", name, now)]
        cid = codec.can_id(d.prio, d.pgn, self.da, self.sa)
        if delay:
            a = delay[0]
            a.used += 1
            a.fired_ms = a.fired_ms if a.fired_ms is not None else now
            self._delayed.append((now + int(a.opts["delay_ms"]), name, cid, payload))
            return
        self._send_frame(now, name, cid, payload)

    def _send_frame(self, now: int, name: str, cid: int, payload: bytes) -> None:
        if len(payload) > 8:
            payload = payload[:8]
        self._send_raw(cid, payload)
        self.rec.on_tx(now, name, payload, cid)

    def _send_raw(self, cid: int, data: bytes) -> None:
        try:
            self.bus.send(can.Message(arbitration_id=cid, data=data, is_extended_id=True))
            self.tx_frames += 1
        except can.CanError as e:
            self.rec.event(self.now, "tx_error", error=str(e))

    def _flush_delayed(self, now: int) -> None:
        due = [x for x in self._delayed if x[0] <= now]
        if due:
            self._delayed = [x for x in self._delayed if x[0] > now]
            for _, name, cid, payload in due:
                self._send_frame(now, name, cid, payload)

    def _start_pending_tp(self, now: int) -> None:
        if self.tp.busy or not self._tp_pending:
            return
        name = next(n for n in _TP_PRIORITY if n in self._tp_pending)
        payload = self._tp_pending.pop(name)
        fault: Optional[TpFault] = None
        for a in self._active("tp", name, now):
            a.used += 1
            a.fired_ms = a.fired_ms if a.fired_ms is not None else now
            fault = a.tp_fault()
            self.rec.event(now, "tp_fault", message=name, fault=fault.kind)
            break
        bam = name in ("BMV", "BMT", "BSP") and self.p.bmv_bmt_bam
        self.tp.start(now, codec.MESSAGES[name].pgn, payload, bam=bam, fault=fault)
        self.rec.on_tx(now, name, payload)

    def _tp_done(self, r: TransferRecord) -> None:
        self.rec.event(r.ended_ms, "tp_done", pgn=r.pgn, result=r.result)
