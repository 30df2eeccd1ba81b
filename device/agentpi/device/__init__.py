"""The running device: the trigger loop, one conversation, its parts and their assembly."""
