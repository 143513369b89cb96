"""The reference: a minimal Flask app on the same server as `hub serve` (hub.serving, same settings).

.venv/bin/python -m benchmarks.pages.hello --port 8001 --processes 2
"""

from __future__ import annotations

import argparse

from flask import Flask


def make_app() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def hello() -> str:
        return "Hello, World!"

    return app


def main() -> None:
    from hub.serving import serve

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    serve(
        "benchmarks.pages.hello:make_app",
        "127.0.0.1",
        args.port,
        processes=args.processes,
        threads=args.threads,
        connections=1000,
    )


if __name__ == "__main__":
    main()
