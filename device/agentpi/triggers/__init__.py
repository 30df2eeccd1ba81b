"""What starts a conversation: the wake word, a button, or the device itself."""
