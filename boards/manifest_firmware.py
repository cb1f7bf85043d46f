# The charger firmware for a board's frozen image: every firmware package
# (gbt, rt, safety, diag, ...) and top-level module (board.py, config.py,
# charger.py, ...), under the names they are imported by (`import
# gbt.messages`, `import config`).  Each board's manifest includes it:
#   include("../manifest_firmware.py")
# (manifestfile.py runs an included manifest with its own directory as the
# current one, so the path below is relative to this file).
import os

_FW = "../firmware"
for _name in sorted(os.listdir(_FW)):
    _p = os.path.join(_FW, _name)
    if os.path.isdir(_p) and any(f.endswith(".py") for f in os.listdir(_p)):
        package(_name, base_path=_FW)
    elif _name.endswith(".py"):
        module(_name, base_path=_FW)
