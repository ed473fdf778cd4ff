"""Training koclip-mini and models like it, and evaluating any model."""
