"""plp: the PersonalLearningPro server core (accounts, sessions, realtime class chat)."""

from __future__ import annotations

__version__ = "0.1.0"
