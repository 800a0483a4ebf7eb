"""Where the CLI writes: tables and results to stdout, failures to stderr."""

from rich.console import Console

out = Console()
err = Console(stderr=True)
if not out.is_terminal:  # piped: tables keep whole ids rather than fit 80 columns
    out.width = max(out.width, 160)
