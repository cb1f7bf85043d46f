"""Scripted deviations of the simulated BMS, loaded from TOML.

A scenario file::

    name = "bcl_timeout"
    description = "BCL stops for 3 s during charging: the charger must send CEM (BCL) after 1 s"
    [params]                 # optional BmsParams overrides (same names as --params files)
    soc = 50
    [checks]                 # optional CheckLimits overrides
    cem_tol_pct = 5
    [[action]]
    type = "drop"
    message = "BCL"
    stage = "charging"       # window start: stage entry (first time) + after_ms ...
    after_ms = 5000
    duration_ms = 3000       # ... for this long (default: until the end)
    # at_ms = 12000          # ... or absolute time from the simulator's first poll
    # count = 10             # affect at most this many frames / transfers

Action types (``message`` is a BMS message name, e.g. "BCL"; for ``ignore`` a charger one):

    drop       the message is not sent (TP messages: the whole transfer)
    delay      frames are sent ``delay_ms`` late
    override   ``fields`` = {name = value} (see codec.FIELDS), ``raw`` = "hex", ``set_bytes`` = {"2" = 0xFF}
    malformed  ``dlc`` = n (truncate / pad) and/or ``garbage`` = true (seeded random bytes)
    inject     send the message now, outside its stage (out-of-order); ``period_ms``, ``count`` (default 1),
               with optional ``fields`` / ``raw`` / ``set_bytes``
    tp         transport fault on the message's next ``count`` (default 1) transfers:
               ``fault`` = wrong_seq|duplicate|missing|swap|size|count|abort|stall, ``packet``, ``value``
    bsm        BSM status fields during the window: ``bits`` = {overtemp = 1, cell_voltage = 1, ...}
    pause      BSM "charging permitted" = 00 during the window (resume after it)
    bst        the BMS stops: BST with ``reason`` / ``fault`` / ``error`` (names from codec.BST_*)
    ignore     the BMS does not hear charger message ``message`` during the window
    pack       set the pack state once: ``temp_c``, ``soc``
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from . import codec
from .tp import TpFault

ACTION_TYPES = ("drop", "delay", "override", "malformed", "inject", "tp", "bsm", "pause", "bst",
                "ignore", "pack")
STAGES = ("wait_chm", "handshake", "recognition", "config", "charging", "stopping", "statistics",
          "error", "wait_crm", "done")
_ONE_SHOT = ("bst", "pack")
_COMMON = {"type", "message", "at_ms", "stage", "after_ms", "duration_ms", "count", "note"}
_OPTS = {
    "drop": set(), "delay": {"delay_ms"}, "override": {"fields", "raw", "set_bytes"},
    "malformed": {"dlc", "garbage"}, "inject": {"fields", "raw", "set_bytes", "period_ms"},
    "tp": {"fault", "packet", "value"}, "bsm": {"bits"}, "pause": set(),
    "bst": {"reason", "fault", "error"}, "ignore": set(), "pack": {"temp_c", "soc"},
}
_NEEDS_MESSAGE = {"drop", "delay", "override", "malformed", "inject", "tp", "ignore"}


@dataclass
class Action:
    type: str
    message: Optional[str] = None
    at_ms: Optional[int] = None
    stage: Optional[str] = None
    after_ms: int = 0
    duration_ms: Optional[int] = None
    count: Optional[int] = None
    opts: Dict[str, Any] = field(default_factory=dict)
    note: str = ""
    used: int = 0                  # frames / transfers affected so far
    fired_ms: Optional[int] = None  # first time it took effect

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], index: int = 0) -> "Action":
        where = "action #%d" % (index + 1)
        t = d.get("type")
        if t not in ACTION_TYPES:
            raise ValueError("%s: unknown type %r (known: %s)" % (where, t, ", ".join(ACTION_TYPES)))
        unknown = set(d) - _COMMON - _OPTS[t]
        if unknown:
            raise ValueError("%s (%s): unknown keys %s" % (where, t, ", ".join(sorted(unknown))))
        msg = d.get("message")
        if t in _NEEDS_MESSAGE:
            if msg is None:
                raise ValueError("%s (%s): 'message' is required" % (where, t))
            msg = str(msg).upper()
            allowed = codec.CHARGER_MESSAGES if t == "ignore" else codec.BMS_MESSAGES
            if msg not in allowed:
                raise ValueError("%s (%s): unknown message %r (allowed: %s)" % (where, t, msg, ", ".join(allowed)))
        stage = d.get("stage")
        if stage is not None and stage not in STAGES:
            raise ValueError("%s: unknown stage %r (known: %s)" % (where, stage, ", ".join(STAGES)))
        if d.get("at_ms") is None and stage is None:
            raise ValueError("%s: give 'at_ms' or 'stage'" % where)
        opts = {k: v for k, v in d.items() if k not in _COMMON}
        count = d.get("count")
        if count is None and t in ("tp", "inject") and d.get("duration_ms") is None:
            count = 1                      # documented default: one transfer / one frame
        a = cls(t, msg, d.get("at_ms"), stage, int(d.get("after_ms", 0)), d.get("duration_ms"),
                count, opts, str(d.get("note", "")))
        try:
            a._validate(where)
        except KeyError as e:
            raise ValueError("%s (%s): %s" % (where, t, e.args[0])) from None
        return a

    def _validate(self, where: str) -> None:
        o = self.opts
        if self.type == "override":
            if not (o.get("fields") or o.get("raw") is not None or o.get("set_bytes")):
                raise ValueError("%s (override): give fields, raw or set_bytes" % where)
            if o.get("fields"):
                codec.encode(self.message, o["fields"])     # raises on an unknown field name
        if self.type == "inject" and o.get("fields"):
            codec.encode(self.message, o["fields"])
        if self.type == "malformed" and o.get("dlc") is None and not o.get("garbage"):
            raise ValueError("%s (malformed): give dlc and/or garbage = true" % where)
        if self.type == "tp":
            if not codec.MESSAGES[self.message].tp and self.message not in ("BMV", "BMT", "BSP"):
                raise ValueError("%s (tp): %s is not a multi-packet message" % (where, self.message))
            self.tp_fault()
        if self.type == "bsm":
            bits = o.get("bits") or {}
            for k in bits:
                if k not in codec.FIELDS["BSM"] or k.endswith(("_no", "_c")):
                    raise ValueError("%s (bsm): unknown status field %r" % (where, k))
        if self.type == "bst":
            codec.mask_of(o.get("reason"), codec.BST_REASON)
            codec.mask_of(o.get("fault"), codec.BST_FAULT)
            codec.mask_of(o.get("error"), codec.BST_ERROR)
        if self.type == "delay" and int(o.get("delay_ms", 0)) <= 0:
            raise ValueError("%s (delay): delay_ms > 0 required" % where)

    def tp_fault(self) -> TpFault:
        return TpFault(str(self.opts.get("fault")), int(self.opts.get("packet", 1)), self.opts.get("value"))

    # -------------------------------------------------------------- timing
    def start_ms(self, t0: int, stage_entry: Mapping[str, int]) -> Optional[int]:
        if self.at_ms is not None:
            return t0 + int(self.at_ms)
        if self.stage in stage_entry:
            return stage_entry[self.stage] + self.after_ms
        return None

    def window(self, now: int, t0: int, stage_entry: Mapping[str, int]) -> bool:
        """True while the action applies (window open and count not exhausted)."""
        s = self.start_ms(t0, stage_entry)
        if s is None or now < s:
            return False
        if self.duration_ms is not None and now >= s + int(self.duration_ms):
            return False
        if self.count is not None and self.used >= int(self.count):
            return False
        return True

    def ended(self, now: int, t0: int, stage_entry: Mapping[str, int]) -> Optional[int]:
        """End time of a window that has closed by time, else None."""
        s = self.start_ms(t0, stage_entry)
        if s is None or self.duration_ms is None:
            return None
        e = s + int(self.duration_ms)
        return e if now >= e else None

    def describe(self) -> str:
        what = self.type + (" " + self.message if self.message else "")
        when = ("at %d ms" % self.at_ms) if self.at_ms is not None else ("%s+%d ms" % (self.stage, self.after_ms))
        if self.duration_ms is not None:
            when += " for %d ms" % int(self.duration_ms)
        return "%s %s" % (what, when)


@dataclass
class Scenario:
    name: str = "normal"
    description: str = ""
    params: Dict[str, Any] = field(default_factory=dict)
    checks: Dict[str, Any] = field(default_factory=dict)
    actions: List[Action] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], name: str = "scenario") -> "Scenario":
        unknown = set(d) - {"name", "description", "params", "checks", "action"}
        if unknown:
            raise ValueError("scenario: unknown top-level keys %s" % ", ".join(sorted(unknown)))
        acts = [Action.from_dict(a, i) for i, a in enumerate(d.get("action", []))]
        return cls(str(d.get("name", name)), str(d.get("description", "")), dict(d.get("params", {})),
                   dict(d.get("checks", {})), acts)

    @classmethod
    def load(cls, path) -> "Scenario":
        from .params import load_toml
        p = Path(path)
        try:
            return cls.from_dict(load_toml(p), p.stem)
        except ValueError as e:
            raise ValueError("%s: %s" % (p, e)) from None

    def of(self, kind: str, message: Optional[str] = None) -> List[Action]:
        return [a for a in self.actions if a.type == kind and (message is None or a.message == message)]


def builtin(name: str) -> Path:
    """Path of a checked-in example scenario (``scenarios/<name>.toml``)."""
    p = Path(__file__).parent / "scenarios" / (name if name.endswith(".toml") else name + ".toml")
    if not p.exists():
        raise FileNotFoundError(p)
    return p


def builtin_names() -> List[str]:
    return sorted(p.stem for p in (Path(__file__).parent / "scenarios").glob("*.toml"))
