"""The generation pipeline: corpus -> queries -> mined candidates -> judged labels -> dataset.

``generate_dataset(params, settings, progress=..., cancelled=..., checkpoint_dir=...)`` runs it; the
server's ``generate`` job kind calls it (the MCP tool and ``adaptrank generate`` both go through a
job, so both are resumable and report the same progress).

Work is done in batches of documents (one batched LLM call for the batch's queries, one for its
judgements). After each batch the finished documents' groups are appended to
``<checkpoint>/done.jsonl``; a resumed job reads it back and continues with the first unfinished
document — finished documents are never redone. Per-document work depends only on the
document (greedy decoding, a fixed order), so a resumed run writes the same dataset as an
uninterrupted one.

Nothing fails silently: a source with no documents, an unknown collection, a path outside the
allowed roots or an LLM that is down raise a clear error; a reply that cannot be used is skipped
and counted in the card (``skipped``), and a run that ends with zero groups is an error.

Where each step lives: :mod:`.params` (``GenerateParams``), :mod:`.checkpoint` (``done.jsonl``),
:mod:`.pipeline` (``generate_dataset`` and its batches).
"""

from adaptrank.training.generate.checkpoint import Checkpoint
from adaptrank.training.generate.params import GenerateParams
from adaptrank.training.generate.pipeline import LABEL_COUNTERS, generate_dataset

__all__ = ["LABEL_COUNTERS", "Checkpoint", "GenerateParams", "generate_dataset"]
