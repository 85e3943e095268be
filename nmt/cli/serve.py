"""``nmt-serve RUN_DIR [--host 127.0.0.1] [--port 8080]``: a trained model behind an HTTP
API (``POST /translate``, ``GET /health``, ``GET /models``) and a web page at ``/``.

Concurrent requests are batched (``--batch-window-ms``, ``--max-batch-tokens``) and decoded
off the event loop by one thread. Only weights-only checkpoints are loaded. It binds to
127.0.0.1 unless told otherwise: it has no authentication. See docs/serving.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from nmt.cli import make_parser
from nmt.cli.common import run_guarded
from nmt.cli.decode_flags import add_quantize_flag
from nmt.config_choices import Device
from nmt.errors import NMTError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from nmt.serve.settings import ServeSettings, flag

    p = make_parser(
        "nmt-serve",
        "Serve a trained nmt model over HTTP (JSON API and a web page), on 127.0.0.1 by default.",
        [
            "nmt-serve runs/quickstart                 # then open http://127.0.0.1:8080/",
            "nmt-serve runs/x --port 0 --workers 2     # a free port; 2 decoding processes",
            'curl -s localhost:8080/translate -d \'{"sentences": ["A dog runs."]}\'',
        ],
        notes="Needs the serve extra: pip install -e '.[serve]'. API and limits: docs/serving.md.",
    )
    p.add_argument("checkpoint", help="a run folder (uses best.pt, else last.pt) or a .pt file")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: a free one)")
    p.add_argument("--device", default="auto", choices=Device.values())
    add_quantize_flag(p)
    p.add_argument(
        "--workers",
        type=int,
        help="CPU processes decoding the batches of one large call in parallel "
        "(default: the checkpoint's decode.workers)",
    )
    p.add_argument(
        "--batch-threads",
        type=int,
        help="threads searching the batches of one large call in parallel, sharing the torch "
        "threads (default: the checkpoint's decode.batch_threads)",
    )
    p.add_argument("--threads", type=int, help="torch threads of the decoding thread")
    p.add_argument("--max-src-len", type=int, default=250, help="truncate longer inputs (pieces)")
    defaults = ServeSettings()
    for field in fields(ServeSettings):
        default = getattr(defaults, field.name)
        p.add_argument(
            f"--{flag(field.name)}",
            type=type(default),
            default=default,
            help=f"{field.metadata['help']} (default {default})",
        )
    p.add_argument("--access-log", action="store_true", help="log every request")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    try:
        import uvicorn
    except ImportError:
        raise NMTError(
            "nmt-serve needs FastAPI and uvicorn: pip install -e '.[serve]' (make install)"
        ) from None
    import torch

    from nmt.serve.app import create_app
    from nmt.serve.model import load_served_model
    from nmt.serve.server import bind, is_loopback, url_of, uvicorn_server
    from nmt.serve.settings import ServeSettings

    settings = ServeSettings(**{f.name: getattr(args, f.name) for f in fields(ServeSettings)})
    settings.check()
    if not 0 <= args.port <= 65535:
        raise NMTError(f"--port must be from 0 (any free port) to 65535 (got {args.port})")
    if args.threads is not None:
        if args.threads < 1:
            raise NMTError(f"--threads must be at least 1 (got {args.threads})")
        torch.set_num_threads(args.threads)
    if not is_loopback(args.host):
        print(
            f"nmt-serve: warning: --host {args.host} lets other machines reach this server, "
            "which has no authentication",
            file=sys.stderr,
        )
    served = load_served_model(
        args.checkpoint,
        args.device,
        args.workers,
        args.max_src_len,
        args.quantize,
        batch_threads=args.batch_threads,
    )
    sock = bind(args.host, args.port)
    print(f"nmt-serve: {served.info['name']} on {url_of(sock)}/", file=sys.stderr, flush=True)
    app = create_app(served, settings)
    server = uvicorn_server(app, args.access_log, log_config=uvicorn.config.LOGGING_CONFIG)
    server.run(sockets=[sock])


def main(argv: list[str] | None = None) -> None:
    run_guarded(run, parse_args(argv))


if __name__ == "__main__":
    main()
