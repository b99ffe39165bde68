"""Seeded generators that write LRA data in the official file formats, so the same loaders read them."""
