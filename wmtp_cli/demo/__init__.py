"""wmtp demo: the whole pipeline on the embedded tiny-code benchmark, in one command.

:func:`run_demo` runs the stages (:mod:`wmtp_cli.demo.pipeline`), :mod:`wmtp_cli.demo.evidence`
measures whether the critic finds the tokens that decide the outcome, and :mod:`wmtp_cli.demo.report`
writes the comparison table and the HTML report.
"""

from wmtp_cli.demo.pipeline import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
