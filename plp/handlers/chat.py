"""Chat: the /chat page, the channel API and the /ws/chat WebSocket (being built)."""

from __future__ import annotations

routes: list = []
