"""modelops training runtime."""
