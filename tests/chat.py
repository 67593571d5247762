"""A fake OpenAI-compatible chat endpoint on loopback: the remote LLM (the one thing outside
the machine) faked at its HTTP seam. It records every request it is sent and answers with the
next scripted ``(status, text)`` in :attr:`replies`, or with ``reply`` once none is left."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ChatServer:
    """An OpenAI-compatible chat endpoint on loopback that records what it was sent."""

    def __init__(self, reply: str | None = None) -> None:
        self.requests: list[Any] = []
        self.replies: list[tuple[int, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                outer.requests.append(json.loads(self.rfile.read(length)))
                status, text = outer.replies.pop(0) if outer.replies else (200, reply or "")
                body = json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": text}}]}
                    if status == 200
                    else {"error": {"message": text}}
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
