"""Which platform adapters to run: every one whose credentials are set."""

from __future__ import annotations

from adapters.base import Adapter
from bots.config import Settings
from core.bus import Bus
from core.persona import PersonaStore


def configured_adapters(settings: Settings, bus: Bus, personas: PersonaStore) -> list[Adapter]:
    adapters: list[Adapter] = []
    return adapters
