"""``hub``: any Hugging Face hub data set (``data.path`` its name, ``data.subset`` its config), in any schema."""

from __future__ import annotations

from wmtp_cli.data.sources.registry import Source, register_source

register_source(Source(
    "hub", "a hub data set: data.path its name, data.subset its config", (), default_split="train",
    path_is_hub_name=True, needs_path=True, any_schema=True,
))  # fmt: skip
