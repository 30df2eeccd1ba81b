"""LEDs: a state -> pattern table rendered on gpiozero devices or an APA102 ring."""
