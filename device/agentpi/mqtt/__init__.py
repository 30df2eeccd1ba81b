"""The device on MQTT: Home Assistant discovery, commands, events and a status document."""
