"""Diagnostics of the paper: attention materialisation, locally accumulated attention (Figure 2), the
Proposition's gradient bound, gradient deviation (Table 2). ``python -m harness.analyze --help``."""
