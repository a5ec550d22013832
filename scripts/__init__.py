"""Developer scripts (not installed with the package): run them from the repository root."""
