"""The machine under the device: files, clock, heap, network, GPIO, systemd, identity."""
