"""Output formats fed by the real client from the emulator."""
