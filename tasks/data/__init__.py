"""Data: official-format readers, vocabularies, built-in generators, downloads, caches."""
