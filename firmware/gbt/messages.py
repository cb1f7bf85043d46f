"""GB/T 27930 message layer: the one import name for codecs.

The code lives in ``gbt.enc`` (charger -> BMS encoders and the CST/CEM
masks) and ``gbt.dec`` (BMS -> charger decoders and status codes) to keep
each module small; this module re-exports both so callers write
``from gbt import messages`` / ``messages.dec_bcl(...)``.
Byte layouts, range rules and reactions: docs/protocol.md.
"""
from gbt.enc import (  # noqa: F401
    CST_R_CONDITION, CST_R_MANUAL, CST_R_FAULT, CST_R_BMS,
    CST_F_OVERTEMP, CST_F_CONNECTOR, CST_F_INTERNAL_OT, CST_F_NO_ENERGY,
    CST_F_ESTOP, CST_F_OTHER, CST_F_SELFCHECK, CST_F_PRECHARGE,
    CST_E_CURRENT, CST_E_VOLTAGE,
    CEM_BRM, CEM_BCP, CEM_BRO, CEM_BCS, CEM_BCL, CEM_BST, CEM_BSD,
    PROFILE_2015, PROFILE_2023A,
    enc_chm, enc_crm, enc_cts, enc_cml, enc_cro, enc_ccs, enc_cst, enc_csd,
    enc_cem,
)
from gbt.dec import (  # noqa: F401
    OK, E_LEN, E_RANGE, E_UNKNOWN,
    dec_bhm, dec_brm, dec_bcp, dec_bro, dec_bcl, dec_bcs, dec_bsm,
    dec_bst, dec_bsd, dec_bem, decode,
)
from gbt.decdetail import dec_bmv, dec_bmt, dec_bsp  # noqa: F401

STATUS_NAMES = ("ok", "length", "range", "unknown")
