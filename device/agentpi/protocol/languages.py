"""The language codes an agent override may name (the contract's Language enum)."""

from __future__ import annotations

# fmt: off
AGENT_LANGUAGES: tuple[str, ...] = (
    "en", "ja", "zh", "de", "hi", "fr", "ko", "pt", "pt-br", "it", "es", "id", "nl", "tr", "pl",
    "sv", "bg", "ro", "ar", "cs", "el", "fi", "ms", "da", "ta", "uk", "ru", "hu", "hr", "sk", "no",
    "vi", "tl", "af", "hy", "as", "az", "be", "bn", "bs", "ca", "et", "gl", "ka", "gu", "ha", "he",
    "is", "ga", "jv", "kn", "kk", "ky", "lv", "lt", "lb", "mk", "ml", "mr", "ne", "ps", "fa", "pa",
    "sr", "sd", "sl", "so", "sw", "te", "th", "ur", "cy",
)
# fmt: on
"""The language codes an override may name (the contract's Language enum)."""
