"""``python -m structbert_gateway --triton-url 127.0.0.1:8001 --repository model_repository --port 8080``"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .options import add_arguments, from_args


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m structbert_gateway", description=__doc__)
    add_arguments(p)
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    options = from_args(args)

    import uvicorn

    from .app import create_app, discover
    from .repository import RepositoryInfo

    repo = RepositoryInfo.load(options.repository)
    try:
        served = asyncio.run(discover(options, repo))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not repo.local:
        logging.getLogger("structbert_gateway").warning(
            "no local --repository: usage.prompt_tokens will be 0 (the server's tokenizer lives in the repository)")
    app = create_app(options, served, repo)
    uvicorn.run(app, host=options.host, port=options.port, log_level=args.log_level, access_log=False,
                timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
