"""agentpi: a Raspberry Pi voice terminal for ElevenLabs conversational agents."""

__version__ = "0.1.0"
