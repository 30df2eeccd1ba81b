"""Audio backends (file, PyAudio) behind one interface, and format conversion."""
