"""SQL for the state store backends, as named, readable blocks (never f-strings with values)."""
