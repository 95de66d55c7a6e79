"""Artifacts' content: scene cards, outlines, character sheets, plot threads and the coverage
report, as data.

`ArtifactWriter` (drafts.py) is the seam between what an artifact says (written here, by a model
through chat-svc's `Complete`, or extracted offline) and when it is made, kept and marked stale
(artifacts.py). Two writers, picked by `PARLEY_ARTIFACTS_PROVIDER` (`build_writer`):

- `ExtractiveWriter` (extractive.py; `local`, the default): offline and deterministic, from the text
  and `screenplay_reports` alone, read through reading.py (the coverage report: coverage.py);
  content says `"method": "extractive"`.
- `ModelWriter` (model.py): asks a `Completer` (chat-svc `Complete`, billed as `summary`) for JSON
  of a fixed shape per kind (prompts.py), validated by the answers (answers.py: cited scene numbers
  must exist; a coverage score's are sifted); one retry on an unusable answer, then the extractive
  artifact for that item. The coverage report is asked of the script's other artifacts as kept.
"""

from parley.ingestion.artifact_writers.drafts import (
    CARD_BATCH_SCENES,
    DIGEST_TOKENS,
    EXTRACTIVE_MODEL,
    ArtifactDraft,
    ArtifactKind,
    ArtifactWriter,
    main_characters,
)
from parley.ingestion.artifact_writers.extractive import ExtractiveWriter
from parley.ingestion.artifact_writers.model import FALLBACK_NOTE, ModelWriter
from parley.ingestion.clients import Completer
from parley.ingestion.config import Settings
from parley.kit.contracts import LOCAL_PROVIDER

__all__ = [
    "CARD_BATCH_SCENES",
    "DIGEST_TOKENS",
    "EXTRACTIVE_MODEL",
    "FALLBACK_NOTE",
    "ArtifactDraft",
    "ArtifactKind",
    "ArtifactWriter",
    "ExtractiveWriter",
    "ModelWriter",
    "build_writer",
    "main_characters",
]


def build_writer(settings: Settings, completer: Completer | None) -> ArtifactWriter:
    if settings.artifacts_provider == LOCAL_PROVIDER:
        return ExtractiveWriter()
    if completer is None:
        raise ValueError(f"artifacts provider {settings.artifacts_provider!r} is asked through chat-svc: no completer")
    return ModelWriter(completer)
