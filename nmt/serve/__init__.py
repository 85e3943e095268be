"""``nmt-serve``: a trained model behind an HTTP API and a web page (FastAPI + uvicorn).

Modules: ``settings`` (limits and batching knobs), ``requests`` (a ``/translate`` body,
checked), ``batcher`` (the queue and the one decoding thread), ``decoding`` (one
``translate_nbest`` call per group of requests), ``model`` (a run folder, loaded and
described), ``app`` (the FastAPI app), ``server`` (uvicorn on a socket), ``loadtest``
(``nmt-bench --serve``). Needs the ``serve`` extra: ``pip install -e '.[serve]'``.
"""
