"""A fictitious firm's working week, end to end through the CLI."""
