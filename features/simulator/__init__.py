"""The synthetic book: a simulated insurance book with known true probabilities (params, the world's daily steps,
the exported tables, the truth)."""
