"""Loading and validating connector files (YAML with ${VAR:-default} interpolation)."""
