"""``wmtp push``: a model folder to a hub repo, with a generated model card, in one commit.

The folder's files go up as they are, plus ``README.md``: the card of :mod:`wmtp_cli.hub.model_card`, or the
folder's own ``README.md`` when it has one (the user wrote it; the folder itself is never modified). One commit
(``create_commit``) holds them all, so the repo never shows a model without its card. huggingface_hub resolves
the token (``HF_TOKEN``, then ``hf auth login``'s file) and honours ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``;
a missing token, the hub switched off, a repo the token cannot write, and a hub that cannot be reached are each
one line before or instead of the upload. ``--private`` creates the repo private; a repo that exists already
keeps its own visibility, so a public one is refused rather than filled.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wmtp_cli.errors import RunError, UsageError, is_network_error
from wmtp_cli.hub.facts import ADAPTER_CONFIG

logger = logging.getLogger(__name__)

CARD = "README.md"
# owner/name, each letters, digits, '-', '_' and '.' (huggingface_hub's rules), at most 96 characters
_REPO_ID = re.compile(r"^[\w.-]{1,96}/[\w.-]{1,96}$")


@dataclass(frozen=True)
class PushResult:
    url: str  # the repo's page
    commit: str  # the commit's id
    files: list[str]  # paths in the repo, README.md included
    card: str  # "generated" or "the folder's own"


def _endpoint() -> str:
    from huggingface_hub import constants

    # Read at call time (huggingface_hub reads it once, at import), so a library user can set it late.
    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def check_can_push(repo_id: str) -> str:
    """That a push to ``repo_id`` can start: a repo id, the hub not switched off, a token. Returns the token."""
    from huggingface_hub import constants, get_token

    if not _REPO_ID.match(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise UsageError(f"{repo_id!r} is not a hub repo id: give owner/name, e.g. your-name/wmtp-critic-7b")
    if constants.HF_HUB_OFFLINE:
        raise UsageError("HF_HUB_OFFLINE is set: the hub is switched off for this process; unset it to push")
    token = get_token()
    if not token:
        raise UsageError(
            "no Hugging Face token: set HF_TOKEN, or run `hf auth login`, with a token that can write to the repo"
        )
    return token


def check_model_folder(folder: Path) -> None:
    """That ``folder`` is a model folder (config.json, or a LoRA adapter's adapter_config.json)."""
    if not folder.exists():
        raise UsageError(f"{folder} does not exist: give a model folder, such as a run's final/")
    if not folder.is_dir():
        raise UsageError(f"{folder} is a file: give a model folder, such as a run's final/")
    if not ((folder / "config.json").is_file() or (folder / ADAPTER_CONFIG).is_file()):
        hint = f"; did you mean {folder / 'final'}?" if (folder / "final" / "config.json").is_file() else ""
        raise UsageError(f"{folder} is not a model folder (it has no config.json or {ADAPTER_CONFIG}){hint}")


def folder_files(folder: Path) -> list[str]:
    """The files to upload, as paths relative to ``folder``: every file but hidden ones (``.cache/``, partial
    writes named ``.something``), as ``upload_folder`` leaves out ``.git`` and ``.cache/huggingface``."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            files.append(relative.as_posix())
    return files


def push_model(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    commit_message: str | None = None,
    eval_files: tuple[Path, ...] = (),
) -> PushResult:
    """Upload the model folder ``folder`` to the hub model repo ``repo_id`` (created if need be) with its model card;
    ``eval_files`` are eval summaries for the card besides those found with the folder."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from wmtp_cli import __version__
    from wmtp_cli.hub.model_card import build_model_card

    folder = Path(folder)
    check_model_folder(folder)
    token = check_can_push(repo_id)
    files = folder_files(folder)
    has_card = CARD in files
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    if not has_card:
        card = build_model_card(folder, repo_id, eval_files)
        operations.append(CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card.encode("utf-8")))
    message = commit_message or f"Upload {folder.name} with wmtp {__version__}"
    api = HfApi(endpoint=_endpoint(), token=token)
    with _hub_errors(repo_id):
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if private and not api.repo_info(repo_id, repo_type="model").private:
            raise UsageError(
                f"a private push was asked for, but {repo_id} exists and is public (creating a repo private does not "
                "change one that exists): make it private in its settings on the hub first, or push it public"
            )
        commit = api.create_commit(repo_id, operations, commit_message=message, repo_type="model")
    uploaded = files if has_card else [*files, CARD]
    return PushResult(str(url), commit.oid, uploaded, "the folder's own" if has_card else "generated")


def push_after_training(final_dir: Path, repo_id: str, private: bool) -> str:
    """:func:`push_model` at the end of ``train-wmtp`` (``run.push_to_hub``): the repo's URL, or an error that says
    the trained model is safe on disk and how to push it again (a failure that is no user error is logged with its
    traceback first)."""
    saved = f"the trained model is saved in {final_dir}, but pushing it to {repo_id} failed"
    again = f"push it later with `wmtp push {final_dir} {repo_id}`"
    try:
        return push_model(final_dir, repo_id, private=private).url
    except UsageError as exc:
        raise UsageError(f"{saved}: {exc}; {again}") from None
    except Exception as exc:
        logger.exception("pushing %s to %s failed", final_dir, repo_id)
        raise RunError(f"{saved} ({type(exc).__name__}: {_first_line(exc)}); {again}") from exc


@contextmanager
def _hub_errors(repo_id: str) -> Iterator[None]:
    """Turns what the hub client raises into one-line :class:`UsageError` s naming ``repo_id`` and the endpoint."""
    try:
        yield
    except UsageError:
        raise
    except Exception as exc:
        error = _as_usage_error(exc, repo_id, _endpoint())
        if error is None:
            raise
        raise error from None


def _as_usage_error(exc: BaseException, repo_id: str, endpoint: str) -> UsageError | None:
    from huggingface_hub import errors

    reason = _first_line(exc)
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return UsageError("HF_HUB_OFFLINE is set: the hub is switched off for this process; unset it to push")
    if isinstance(exc, errors.HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 401:
            return UsageError(f"the hub at {endpoint} refused the token (HTTP 401: {reason}): set HF_TOKEN to a valid "
                              "token with write access, or run `hf auth login`")  # fmt: skip
        if status == 403:
            return UsageError(f"this token cannot write to {repo_id} on {endpoint} (HTTP 403: {reason}): use a token "
                              "with write access to that namespace (a fine-grained one needs write on it)")  # fmt: skip
        return UsageError(f"the hub at {endpoint} refused the push to {repo_id} (HTTP {status}: {reason})")
    if is_network_error(exc):
        return UsageError(f"cannot reach the hub at {endpoint} ({type(exc).__name__}: {reason}): check the network "
                          "or HF_ENDPOINT")  # fmt: skip
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
