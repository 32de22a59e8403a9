"""``demo-corpus``: a small, learnable raw corpus of every kind, drawn from a seed."""
