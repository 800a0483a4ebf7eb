"""The ``mnist`` command line (see cli/main.py)."""
