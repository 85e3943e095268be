"""nmt: recurrent encoder-decoder neural machine translation.

Pipeline, one package per stage: ``nmt.data`` (download, read, clean, tokenize, batch)
-> ``nmt.models`` (embeddings, encoder, attention, decoder) -> ``nmt.train``
-> ``nmt.search`` (greedy, beam, sampling) -> ``nmt.scoring`` -> ``nmt.cli``.
"""

__version__ = "0.1.0"
