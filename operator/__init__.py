"""modelops operator."""
