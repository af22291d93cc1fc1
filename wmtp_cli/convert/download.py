"""``wmtp download``: fetch Meta's MTP checkpoint from the hub (or read a local copy) and convert it.

The hub repo (``facebook/multi-token-prediction``) is gated: a token whose account accepted the
licence is needed (``HF_TOKEN`` or ``hf auth login``). Only the chosen variant's folder and the
tokenizer are fetched; huggingface_hub resumes interrupted downloads and honours ``HF_TOKEN``,
``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from wmtp_cli.convert.meta_checkpoint import check_conversion_output, convert_meta_checkpoint
from wmtp_cli.errors import UsageError, is_network_error

logger = logging.getLogger(__name__)

DEFAULT_REPO = "facebook/multi-token-prediction"
DEFAULT_VARIANT = "7B_1T_4"


def local_variants(root: Path) -> list[str]:
    """Variant folders (those holding a params.json) directly under ``root``."""
    return sorted(p.parent.name for p in root.glob("*/params.json"))


def resolve_local_variant(source: Path, variant: str | None) -> Path:
    """The variant folder of a local copy in Meta's layout (or ``source`` itself if it is one)."""
    if (source / "params.json").is_file():
        if variant and variant != source.name:
            raise UsageError(f"{source} is itself a variant folder ({source.name}); drop --variant {variant}")
        return source
    present = local_variants(source)
    if not present:
        raise UsageError(
            f"{source} is not in Meta's layout: expected variant folders holding params.json and "
            "consolidated.pth, with tokenizer.model at the root"
        )
    if variant is None:
        if len(present) == 1:
            return source / present[0]
        variant = DEFAULT_VARIANT
    if variant not in present:
        raise UsageError(f"no variant {variant!r} in {source}; present: {', '.join(present)}")
    return source / variant


def _hub_errors():
    from huggingface_hub import errors

    return errors


def fetch_from_hub(repo_id: str, variant: str, revision: str | None = None, cache_dir: str | None = None) -> Path:
    """Download ``variant/*`` and ``tokenizer.model`` of ``repo_id``; return the snapshot folder."""
    from huggingface_hub import HfApi, constants, snapshot_download

    errors = _hub_errors()
    # Read at call time (huggingface_hub reads it once, at import), so a library user can set it late.
    endpoint = os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")
    try:
        if not constants.HF_HUB_OFFLINE:
            # One request, no retries: a hub that cannot be reached is reported at once.
            info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision)
            files = [sibling.rfilename for sibling in info.siblings or []]
            present = sorted({f.split("/")[0] for f in files if f.count("/") == 1 and f.endswith("/params.json")})
            if variant not in present:
                raise UsageError(f"{repo_id} has no variant {variant!r}; present: {', '.join(present) or 'none'}")
            if "tokenizer.model" not in files:
                raise UsageError(f"{repo_id} has no tokenizer.model at its root: is it a Meta MTP repo?")
        snapshot = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=[f"{variant}/*", "tokenizer.model"],
            endpoint=endpoint,
        )
    except errors.GatedRepoError:
        raise UsageError(
            f"{repo_id} is gated and this account has no access: accept the licence at "
            f"https://huggingface.co/{repo_id}, then set HF_TOKEN (or run `hf auth login`) with that account's token"
        ) from None
    except errors.RepositoryNotFoundError:
        raise UsageError(
            f"{repo_id} was not found on {endpoint} (or it is private and no valid token was given): "
            "check the name, or set HF_TOKEN"
        ) from None
    except errors.RevisionNotFoundError:
        raise UsageError(f"{repo_id} has no revision {revision!r}") from None
    except errors.LocalEntryNotFoundError:
        raise UsageError(
            f"{repo_id} variant {variant} is not in the local cache and the hub cannot be reached "
            f"({'HF_HUB_OFFLINE is set' if constants.HF_HUB_OFFLINE else endpoint}): connect, unset "
            "HF_HUB_OFFLINE, or pass a local folder in Meta's layout as SOURCE"
        ) from None
    except errors.HfHubHTTPError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"the hub at {endpoint} refused the request for {repo_id}: {first_line}") from None
    except Exception as exc:
        if isinstance(exc, UsageError) or not is_network_error(exc):
            raise
        raise UsageError(
            f"cannot reach the hub at {endpoint} ({type(exc).__name__}: {exc}): check the network or HF_ENDPOINT, "
            "or pass a local folder in Meta's layout as SOURCE"
        ) from None
    root = Path(snapshot)
    if not (root / variant / "params.json").is_file():
        raise UsageError(
            f"{repo_id} variant {variant} is not complete in the local cache ({root}); run again online to finish it"
        )
    return root


def download(
    source: str = DEFAULT_REPO,
    out: str | Path | None = None,
    variant: str | None = None,
    dtype: str | None = None,
    force: bool = False,
    revision: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Fetch (or read) a Meta MTP checkpoint and convert it to a Hugging Face style folder.

    ``source`` is a local folder in Meta's layout (converted with no network) or a hub repo id.
    ``out`` defaults to ``checkpoints/<variant>``. Returns the output folder.
    """
    local = Path(source).expanduser()
    if local.exists():
        if not local.is_dir():
            raise UsageError(f"{source} is a file: SOURCE must be a folder in Meta's layout or a hub repo id")
        variant_dir = resolve_local_variant(local, variant)
        check_conversion_output(Path(out) if out else Path("checkpoints") / variant_dir.name, force)
        origin = {"origin": "local", "path": str(local.resolve())}
    elif source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise UsageError(f"{source} does not exist: SOURCE must be a local folder or a hub repo id like {DEFAULT_REPO}")
    else:
        variant = variant or DEFAULT_VARIANT
        # refuse before a 25 GiB download, not after
        check_conversion_output(Path(out) if out else Path("checkpoints") / variant, force)
        variant_dir = fetch_from_hub(source, variant, revision) / variant
        origin = {"origin": "hub", "repo_id": source, "revision": revision or "main", "variant": variant}
    out_dir = Path(out) if out else Path("checkpoints") / variant_dir.name
    return convert_meta_checkpoint(variant_dir, out_dir, dtype=dtype, force=force, progress=progress, provenance=origin)
