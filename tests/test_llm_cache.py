"""The LLM answer cache is keyed by the model the server actually serves (a stub
OpenAI-compatible server on 127.0.0.1, not one of our components)."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from irlens.errors import IrlensError
from irlens.sae.llm import ChatEndpoint, DiskCache


class _Stub:
    """Serves ``served`` (a list of model names) at /v1/models, or no listing at all;
    answers every chat request with the first served name."""

    def __init__(self, served: list[str] | None):
        self.served = served
        self.posts: list[dict] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, code: int, payload: dict) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(payload).encode())

            def do_GET(self):  # noqa: N802
                if stub.served is None or self.path != "/v1/models":
                    self._send(404, {"error": "not found"})
                else:
                    self._send(200, {"object": "list",
                                     "data": [{"id": m, "object": "model"} for m in stub.served]})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.posts.append(body)
                who = stub.served[0] if stub.served else "unlisted"
                self._send(200, {"model": who, "choices": [
                    {"message": {"content": f"answer from {who}"}}]})

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    servers = []

    def make(served):
        servers.append(_Stub(served))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_another_model_behind_the_same_address_does_not_reuse_answers(stub, tmp_path):
    server = stub(["model-a"])
    cache = tmp_path / "cache"
    assert DiskCache(ChatEndpoint(server.url), cache).complete("name it", 5) == \
        "answer from model-a"
    server.served = ["model-b"]  # the server now runs another model, same address
    llm = DiskCache(ChatEndpoint(server.url), cache)
    assert llm.complete("name it", 5) == "answer from model-b"
    assert llm.name == f"model-b@{server.url}/chat/completions"
    assert len(server.posts) == 2 and server.posts[1]["model"] == "model-b"
    server.served = ["model-a"]  # back to the first: its answer comes from the cache
    assert DiskCache(ChatEndpoint(server.url), cache).complete("name it", 5) == \
        "answer from model-a"
    assert len(server.posts) == 2 and len(list(cache.iterdir())) == 2


def test_the_requested_model_is_picked_among_several_or_refused(stub, tmp_path):
    server = stub(["small", "large"])
    llm = ChatEndpoint(server.url, "large")
    assert llm.served_model() == "large"
    with pytest.raises(IrlensError, match="serves 2 models.*small, large.*--llm-model") as err:
        DiskCache(ChatEndpoint(server.url), tmp_path).complete("hi")
    assert "\n" not in str(err.value) and server.posts == []


def test_a_server_without_a_model_list_is_keyed_by_the_requested_name(stub, tmp_path):
    server = stub(None)
    with pytest.warns(UserWarning, match="does not list its models"):
        llm = DiskCache(ChatEndpoint(server.url, "m"), tmp_path)
        assert llm.complete("hi") == "answer from unlisted"
    assert llm.name == f"m@{server.url}/chat/completions"
