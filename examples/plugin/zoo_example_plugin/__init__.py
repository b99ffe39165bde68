"""Example attention_zoo plugin (docs/add_your_attention.md): each backend is one file with its float64 reference."""
