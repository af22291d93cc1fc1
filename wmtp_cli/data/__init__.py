"""Data: benchmark and local problems normalised to one record, and training examples from them.

- :mod:`~wmtp_cli.data.records`: the :class:`ProblemRecord` every source is normalised to.
- :mod:`~wmtp_cli.data.sources`: :func:`~wmtp_cli.data.sources.load_problems`, the one entry point.
- :mod:`~wmtp_cli.data.schemas`: recognising a schema by its columns, normalising its rows.
- :mod:`~wmtp_cli.data.templates`: the default prompt templates and user templates.
- :mod:`~wmtp_cli.data.examples`: token ids, labels, truncation, packing and padding.

Nothing is imported here, so that ``wmtp_cli.data.records`` stays light for the executor and rewards
(the other modules import ``datasets``).
"""
