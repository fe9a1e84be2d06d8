"""`Store`: every record plp keeps, as one interface the handlers and services see.

The core (`Database`: users, channels, messages, the audit log) is in base.py; each later
feature declares its records and abstract methods in a module of its own (an `abc.ABC` named
`<Feature>Store`) and joins them here, and its SQL in a `*_sql.py` part that `SQLDatabase`
(sql.py) joins. So a feature is read in two files, and base.py and sql.py stay the core.
"""

from __future__ import annotations

from .base import Database
from .classes import ClassStore
from .passkeys import PasskeyStore
from .reset_codes import ResetCodeStore
from .totp import TotpStore


class Store(Database, ClassStore, ResetCodeStore, TotpStore, PasskeyStore):
    """The whole storage interface: the core `Database` and every feature's part."""
