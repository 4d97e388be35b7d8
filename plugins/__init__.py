"""Built-in device-type mapper plugins."""
