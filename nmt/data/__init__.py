"""Data pipeline: download -> read -> clean -> tokenize -> numericalize (cached) -> batch.

Entry points: :func:`nmt.data.prepare.prepare` (parallel corpora),
:func:`nmt.data.prepare.prepare_text` (character corpus), and
:mod:`nmt.data.batching` (training and inference batches, padding).
"""
