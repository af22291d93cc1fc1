"""How the library reports progress: the library calls, the CLI draws (rich progress bars, ETA)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[..., None]
"""``progress(stage, done, total, status="")``: ``done`` of ``total`` units of ``stage``, with an optional status."""
