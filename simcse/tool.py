"""``SimCSE``: encode, compare and search sentences with a SimCSE checkpoint (docs/FAITHFULNESS.md, "Inference tool").

Differences from the original tool, each fixing a reported pitfall:

* the pooler comes from the checkpoint's own ``config.json`` when it records one; the old
  "``unsup`` in the path" guess is only the last fallback, and the choice is logged (issue #194);
* every pooler of :mod:`simcse.poolers` is supported, with the same formulas as training/evaluation;
* the model is moved to a device only when the device changes, not on every ``encode`` call;
* sentences are embedded by the one encode path of evaluation (simcse.encode: token-length-sorted batches,
  results put back in input order), and a folder without weights fails as everywhere else (simcse.loading);
* the faiss "fast" index uses inner product, list queries keep ``threshold``/``top_k``, and a missing
  faiss falls back to an exact index with the same ``add``/``search`` interface;
* importing this module does not configure logging.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from simcse.encode import make_embed_fn
from simcse.loading import load_encoder, untrained_pooler_problem
from simcse.poolers import check_pooler_type, eval_pooler_from_config
from simcse.settings import RuntimeOptions

logger = logging.getLogger(__name__)

Sentences = str | Sequence[str]


class ExactIndex:
    """Brute-force inner-product index with faiss' ``add``/``search``/``ntotal`` interface.

    Exact, so it doubles as the reference for faiss in tests; ``search`` pads with id -1 and score
    ``-inf`` when fewer than ``k`` vectors exist, like faiss.
    """

    def __init__(self, dim: int) -> None:
        self.d = dim  # faiss' name for the vector dimension
        self.vectors = np.zeros((0, dim), dtype=np.float32)  # (n, H)

    @property
    def ntotal(self) -> int:
        return self.vectors.shape[0]

    def add(self, x: np.ndarray) -> None:
        self.vectors = np.concatenate([self.vectors, np.asarray(x, dtype=np.float32)], axis=0)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries: (q, H) -> scores (q, k) descending, ids (q, k)."""
        q = np.asarray(queries, dtype=np.float32)
        scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        ids = np.full((q.shape[0], k), -1, dtype=np.int64)
        kk = min(k, self.ntotal)
        if kk == 0:
            return scores, ids
        sims = torch.from_numpy(q) @ torch.from_numpy(self.vectors).T  # (q, n)
        top = torch.topk(sims, kk, dim=1)  # sorted descending
        scores[:, :kk] = top.values.numpy()
        ids[:, :kk] = top.indices.numpy()
        return scores, ids


def _as_sentences(sentence: Any) -> list[str]:
    """A str or a sequence of str; anything else fails here with its position and type, not in the tokenizer."""
    if isinstance(sentence, bytes) or not hasattr(sentence, "__iter__"):
        raise TypeError(f"encode: expected a str or a list of str, got {type(sentence).__name__}")
    sentences = list(sentence)
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise TypeError(f"encode: sentence {i} is a {type(s).__name__}, not a str; pass a str or a list of str")
    return sentences


class SimCSE:
    """Sentence embeddings, similarity and retrieval with an HF-format SimCSE checkpoint.

    Args:
        model_name_or_path: local folder or hub id in HF format (see ``simcse_to_huggingface.py`` for
            old checkpoints).
        device: where the model runs; defaults to CUDA when available.
        num_cells: IVF list count for ``build_index(faiss_fast=True)`` (capped at the corpus size).
        num_cells_in_search: IVF lists probed per query (``nprobe``).
        pooler: one of ``simcse.poolers.POOLER_TYPES``; overrides what the checkpoint records.
        cls_only_last_layer: with a [CLS] pooler, run the last layer at [CLS] only (the same vectors up to
            float rounding, less work; simcse.cls_shortcut); False = the full last layer.
    """

    def __init__(
        self,
        model_name_or_path: str,
        device: str | None = None,
        num_cells: int = 100,
        num_cells_in_search: int = 10,
        pooler: str | None = None,
        cls_only_last_layer: bool = RuntimeOptions.cls_only_last_layer,
    ) -> None:
        self.model_name_or_path = str(model_name_or_path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # The model stays on the CPU until the first encode() (moved only when the device changes).
        self.model, self.tokenizer = load_encoder(self.model_name_or_path, "cpu")
        self._model_device: str | None = None
        self.cls_only_last_layer = cls_only_last_layer
        self.index: dict[str, Any] | None = None
        self.is_faiss_index = False
        self.num_cells = num_cells
        self.num_cells_in_search = num_cells_in_search
        self.pooler = self._choose_pooler(pooler)
        problem = untrained_pooler_problem(self.model, self.pooler)
        if problem:
            logger.warning("%s: %s", self.model_name_or_path, problem)

    def _choose_pooler(self, pooler: str | None) -> str:
        """The argument, else the checkpoint's config.json, else the original tool's name heuristic."""
        if pooler is not None:
            chosen, source = check_pooler_type(pooler), "argument"
        elif (from_config := eval_pooler_from_config(self.model.config)) is not None:
            chosen, source = from_config, "checkpoint config.json"
        else:
            # Last resort, as in the original tool: released unsup checkpoints are used without the MLP.
            chosen = "cls_before_pooler" if "unsup" in self.model_name_or_path else "cls"
            source = "name heuristic ('unsup' in the path -> cls_before_pooler, else cls); pass pooler= to be sure"
        logger.info("SimCSE(%s): pooler %r from %s", self.model_name_or_path, chosen, source)
        return chosen

    # ------------------------------------------------------------------------------------- encoding

    def _to_device(self, device: str) -> None:
        if self._model_device != device:
            self.model.to(device)
            self._model_device = device

    @torch.no_grad()
    def encode(
        self,
        sentence: Sentences,
        device: str | None = None,
        return_numpy: bool = False,
        normalize_to_unit: bool = True,
        keepdim: bool = False,
        batch_size: int = 64,
        max_length: int = 128,
        show_progress_bar: bool | None = None,
    ) -> torch.Tensor | np.ndarray:
        """Embed one sentence (-> (H,) unless ``keepdim``) or a list (-> (n, H)), on CPU.

        Sentences go through the one encode path (simcse.encode: sorted by token length, batched,
        order restored), the same as evaluation.py. show_progress_bar: None shows tqdm only for long inputs
        (more than 8 batches).
        """
        target = device or self.device
        single = isinstance(sentence, str)
        sentences = [sentence] if single else _as_sentences(sentence)  # a bad input fails before any work
        self._to_device(target)
        embed = make_embed_fn(
            self.model, self.tokenizer, self.pooler, target, max_length, batch_size, self.cls_only_last_layer,
            progress=show_progress_bar,
        )
        embeddings = embed(sentences)  # (n, H) float CPU, input order
        if normalize_to_unit:
            embeddings = embeddings / embeddings.norm(dim=1, keepdim=True)
        if single and not keepdim:
            embeddings = embeddings[0]
        return embeddings.numpy() if return_numpy else embeddings

    def similarity(
        self,
        queries: Sentences | np.ndarray,
        keys: Sentences | np.ndarray,
        device: str | None = None,
    ) -> float | np.ndarray:
        """Cosine similarities: (N, M) array; a single query gives (M,); single query and key a float.

        ``ndarray`` arguments are taken as pre-computed vectors ((H,) or (n, H)) and not encoded.
        """

        def as_matrix(x: Sentences | np.ndarray) -> tuple[np.ndarray, bool]:
            if isinstance(x, np.ndarray):
                vecs, single = x, x.ndim == 1
            else:
                vecs, single = self.encode(x, device=device, return_numpy=True), isinstance(x, str)
            vecs = np.atleast_2d(vecs).astype(np.float32)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            return vecs / np.clip(norms, 1e-12, None), single

        q, single_q = as_matrix(queries)  # (N, H)
        k, single_k = as_matrix(keys)  # (M, H)
        sims = q @ k.T  # (N, M)
        if single_q and single_k:
            return float(sims[0, 0])
        if single_q:
            return sims[0]
        return sims

    # ------------------------------------------------------------------------------------ retrieval

    @staticmethod
    def _read_sentences(sentences_or_file_path: Sentences) -> list[str]:
        if isinstance(sentences_or_file_path, str):
            with open(sentences_or_file_path, encoding="utf-8") as f:
                return [line.rstrip() for line in f]
        return list(sentences_or_file_path)

    def build_index(
        self,
        sentences_or_file_path: Sentences,
        use_faiss: bool | None = None,
        faiss_fast: bool = False,
        device: str | None = None,
        batch_size: int = 64,
    ) -> None:
        """Encode a corpus (list, or a file with one sentence per line) and index it for ``search``.

        use_faiss: None/True try faiss (inner product; IVF when ``faiss_fast``) and fall back to the exact
        index with a warning when it is unavailable; False always uses the exact index.
        """
        if use_faiss is None or use_faiss:
            try:
                import faiss

                if not hasattr(faiss, "IndexFlatIP"):
                    raise ImportError("faiss has no IndexFlatIP")
                use_faiss = True
            except ImportError as err:
                logger.warning("faiss unavailable (%s): using the exact index", err)
                use_faiss = False
        sentences = self._read_sentences(sentences_or_file_path)
        logger.info("encoding %d sentences for the index", len(sentences))
        embeddings = self.encode(sentences, device=device, batch_size=batch_size, return_numpy=True)  # (n, H)
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        dim = embeddings.shape[1]
        if use_faiss:
            import faiss

            quantizer = faiss.IndexFlatIP(dim)
            if faiss_fast:
                cells = max(1, min(self.num_cells, len(sentences)))
                index = faiss.IndexIVFFlat(quantizer, dim, cells, faiss.METRIC_INNER_PRODUCT)
            else:
                index = quantizer
            want_gpu = (self.device == "cuda" and device != "cpu") or device == "cuda"
            if want_gpu and hasattr(faiss, "StandardGpuResources"):
                logger.info("using faiss on GPU 0")
                resources = faiss.StandardGpuResources()
                resources.setTempMemory(20 * 1024**3)
                index = faiss.index_cpu_to_gpu(resources, 0, index)
                self._faiss_gpu_resources = resources  # must outlive the index
            if faiss_fast:
                index.train(embeddings)
            index.add(embeddings)
            if faiss_fast:
                index.nprobe = min(self.num_cells_in_search, cells)
        else:
            index = ExactIndex(dim)
            index.add(embeddings)
        self.index = {"sentences": sentences, "index": index}
        self.is_faiss_index = bool(use_faiss)

    def add_to_index(self, sentences_or_file_path: Sentences, device: str | None = None, batch_size: int = 64) -> None:
        """Append sentences to the index made by ``build_index``."""
        if self.index is None:
            raise RuntimeError("no index yet: call build_index(...) before add_to_index(...)")
        sentences = self._read_sentences(sentences_or_file_path)
        embeddings = self.encode(sentences, device=device, batch_size=batch_size, return_numpy=True)
        self.index["index"].add(np.ascontiguousarray(embeddings, dtype=np.float32))
        self.index["sentences"] += sentences

    def _check_index(self) -> None:
        """An empty index, or one whose vectors do not match its sentences or this model, gives wrong hits."""
        index, sentences = self.index["index"], self.index["sentences"]
        if index.ntotal == 0:
            raise ValueError("the index is empty: build_index(...) was given no sentences")
        if index.ntotal != len(sentences):
            raise ValueError(
                f"the index holds {index.ntotal} vectors for {len(sentences)} sentences: "
                "rebuild it with build_index(...)"
            )
        dim = index.d  # faiss indexes and ExactIndex both have it
        if dim != self.model.config.hidden_size:
            raise ValueError(
                f"the index holds {dim}-dimensional vectors but {self.model_name_or_path} gives "
                f"{self.model.config.hidden_size}: rebuild it with build_index(...) for this model"
            )

    def search(
        self,
        queries: Sentences,
        device: str | None = None,
        threshold: float = 0.6,
        top_k: int = 5,
    ) -> list[tuple[str, float]] | list[list[tuple[str, float]]]:
        """Most similar indexed sentences with cosine >= ``threshold``, at most ``top_k``, best first.

        A str query gives a list of (sentence, score); a list of queries gives one such list per query.
        """
        if self.index is None:
            raise RuntimeError("no index yet: call build_index(...) before search(...)")
        self._check_index()
        single = isinstance(queries, str)
        q = self.encode(queries, device=device, return_numpy=True, keepdim=True)  # (q, H)
        scores, ids = self.index["index"].search(np.ascontiguousarray(q, dtype=np.float32), top_k)  # (q, k)
        sentences = self.index["sentences"]
        results = [
            [
                (sentences[i], float(s))
                for s, i in zip(row_scores, row_ids)
                if i >= 0 and s >= threshold  # faiss pads missing hits with id -1
            ]
            for row_scores, row_ids in zip(scores, ids)
        ]
        return results[0] if single else results
