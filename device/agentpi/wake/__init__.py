"""Wake word detection: models, engines, and the rules that turn scores into one trigger."""
