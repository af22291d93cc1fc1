"""Prompt templates: the default text each data schema conditions the model on, and user templates.

Each default is declared by its source (:mod:`wmtp_cli.data.sources`, :func:`default_template`); the
README links here. Placeholders are Python
``str.format`` fields, so a literal brace in a template is written twice (``{{`` and ``}}``).

``mbpp`` (and ``mbpp_sanitized``)::

    You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:

    {tests}

where ``{tests}`` is the problem's ``test_list``, one assert a line, and the prompt ends with one
newline after them. This is the header of the prompt format of the MBPP paper (Austin et al. 2021,
"Program Synthesis with Large Language Models", appendix; also EleutherAI lm-evaluation-harness's
``mbpp`` task) without its ``[BEGIN]``/``[DONE]`` markers: few-shot prompting needs them to show
where code ends, while a fine-tuned completion ends with the EOS token.

``codecontests`` (ours; AlphaCode conditioned on the description with a metadata header instead)::

    Write a Python 3 program that solves the problem below. The program reads its input from standard
    input and writes its answer to standard output.

    {description}

    Python 3 program:

``humaneval``, ``tiny_code`` and ``prompt_completion``: the prompt as is (``{prompt}``). A HumanEval
(or tiny-code) prompt is a function signature and docstring, and its completion is the function's body.

A user template (``data.prompt_template``) may use these placeholders (:func:`placeholders`):

- every schema: ``{prompt}`` (the default template's text for that schema) and ``{task_id}``;
- ``mbpp``: ``{text}`` (the problem statement) and ``{tests}`` (as above);
- ``codecontests``: ``{description}`` and ``{name}``;
- ``humaneval`` and ``tiny_code``: ``{entry_point}`` (the function's name).

For example ``"[INST] {prompt} [/INST]\\n"`` wraps every default prompt in an instruction format.
"""

from __future__ import annotations

import string

from wmtp_cli.errors import UsageError


def default_template(schema: str) -> str:
    """The default prompt template of ``schema`` (``{prompt}`` there is the source's own prompt field)."""
    from wmtp_cli.data.sources import SCHEMAS

    return SCHEMAS[schema].template


def placeholders(schema: str) -> tuple[str, ...]:
    """The placeholders a user template may use with ``schema``'s data."""
    from wmtp_cli.data.sources import SCHEMAS

    return SCHEMAS[schema].all_placeholders


def placeholders_in(template: str) -> list[str]:
    """The field names ``template`` uses, in order; :class:`UsageError` if it is not a valid format string."""
    try:
        return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as error:
        raise UsageError(
            f"data.prompt_template {template!r} is not a valid template ({error}); "
            "write a literal brace twice: {{ or }}"
        ) from None


def check_template(template: str, schema: str) -> None:
    """:class:`UsageError` unless every placeholder of ``template`` is one ``schema`` provides."""
    allowed = placeholders(schema)
    unknown = [field for field in placeholders_in(template) if field not in allowed]
    if unknown:
        listed = ", ".join("{" + name + "}" for name in allowed)
        shown = ", ".join(repr("{" + name + "}") for name in unknown)
        raise UsageError(
            f"data.prompt_template uses {shown}, which {schema} data does not have; use {listed} "
            f"(literal braces are written {{{{ and }}}})"
        )


def render_prompt(schema: str, fields: dict[str, str], template: str | None = None) -> str:
    """The prompt for one problem: the schema's default template, then ``template`` around it if given.

    ``fields`` holds the schema's placeholders except ``{prompt}``, which is the source's own prompt
    field for ``humaneval`` and ``prompt_completion`` and is filled in here for the others.
    """
    default = default_template(schema).format_map(fields)
    if template is None:
        return default
    return template.format_map({**fields, "prompt": default})


def stop_sequences(source: str) -> tuple[str, ...]:
    """Text at which a sampled completion of ``source`` is cut (none for sources without a known format; a
    fine-tuned model also stops at EOS)."""
    from wmtp_cli.data.sources import SOURCES

    known = SOURCES.get(source)
    return known.stop_sequences if known is not None else ()
