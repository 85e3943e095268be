"""Data pipeline: download -> read -> clean -> tokenize -> numericalize (cached) -> batch.

Entry points: :func:`nmt.data.prepare.prepare` (parallel corpora),
:func:`nmt.data.prepare.prepare_text` (character corpus), and
:class:`nmt.data.batching.TokenBatchSampler` with :func:`nmt.data.batching.collate`.
"""
