"""modelops runtime."""
