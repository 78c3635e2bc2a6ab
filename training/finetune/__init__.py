"""Fine-tune a reranker on a generated dataset (groups of a query, a positive and hard negatives)
with the LCE loss, then save it to the model store and promote it only if it wins on dev.

Methods (``FinetuneParams.method``), each trained by a sentence-transformers trainer (so warm-up,
LR schedule, gradient accumulation, seeds, bf16 on GPU and DDP under ``torchrun`` /
``accelerate launch`` come from the Hugging Face Trainer):

* ``query-encoder`` (the default without a pretrained cross-encoder): a residual reranker. The
  passage side stays the frozen zero-shot bi-encoder; a copy of its query tower is trained with LCE
  over the frozen passage embeddings. Step 0 ranks exactly like the zero-shot default, and a step
  costs a forward/backward over short queries only, so it trains in minutes on a CPU.
* ``residual``: zero-shot cosine / tau + a cross-encoder term whose head starts at zero.
* ``cross-encoder``: plain LCE on a cross-encoder (the default when ``base_model`` *is* a
  pretrained cross-encoder, e.g. ``cross-encoder/ms-marco-MiniLM-L6-v2`` where a hub is reachable).
* ``bi-encoder``: both towers of the bi-encoder, MultipleNegativesRankingLoss with the hard
  negatives (served by the existing ``bi-encoder`` backend).

docs/finetuning.md has the measured comparison behind the default.

Safety: the model is trained in memory, then written through ``ModelStore.writing()`` (a temp
directory renamed into place) with its dev metrics computed by the serving code on the saved files;
a failure or a cancel anywhere leaves the store as it was, and the active version changes only
through :mod:`adaptrank.training.promotion`.

Where each step lives: :mod:`.params` (``FinetuneParams``, defaults), :mod:`.data` (which groups
train and evaluate; the dev metrics), :mod:`.base_models` (resolving and loading ``base_model``),
:mod:`.callbacks` (progress, cancellation, early stopping), :mod:`.run` (what the methods share),
one module per method (:mod:`.query_encoder`, :mod:`.cross_encoder` for ``cross-encoder`` and
``residual``, :mod:`.bi_encoder`), and :mod:`.pipeline` (the run end to end; ``METHODS`` maps a
method to its trainer).
"""

from adaptrank.training.finetune.base_models import Base, resolve_base, resolve_method
from adaptrank.training.finetune.data import dev_metrics, load_dataset_groups, select_groups
from adaptrank.training.finetune.params import (
    DEFAULT_LR,
    DEFAULT_MAX_LENGTH,
    DEFAULT_METHOD,
    FinetuneParams,
    FinetuneResult,
    parse_params,
)
from adaptrank.training.finetune.pipeline import METHODS, finetune

__all__ = [
    "DEFAULT_LR",
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_METHOD",
    "METHODS",
    "Base",
    "FinetuneParams",
    "FinetuneResult",
    "dev_metrics",
    "finetune",
    "load_dataset_groups",
    "parse_params",
    "resolve_base",
    "resolve_method",
    "select_groups",
]
