"""Loading and scoring: every family, both kinds, the real default model, bad input."""

from __future__ import annotations

import hashlib

import pytest
import torch
from tiny import FAMILIES, tiny_model, tiny_model_dir

from irlens import IrlensError, load_model
from irlens.models import BiEncoder, CrossEncoder, Segment

Q = ["what do cats eat"]
D = ["cats are carnivores and eat meat such as mice and fish"]


@pytest.mark.parametrize("family", FAMILIES)
def test_cross_encoder_score_matches_hf_forward(tiny_root, family):
    for labels in (1, 2):
        model = tiny_model(tiny_root, family, "cross", num_labels=labels)
        assert isinstance(model, CrossEncoder)
        enc = model.tokenizer(Q, D, return_tensors="pt")
        if family in ("roberta", "distilbert"):
            enc.pop("token_type_ids", None)
        logits = model.model(**enc).logits
        expected = logits[:, 0] if labels == 1 else logits[:, 1]
        assert torch.allclose(model.score(Q, D), expected, atol=1e-6)
        prob = model.score(Q, D, output="prob")
        ref = torch.sigmoid(logits[:, 0]) if labels == 1 else logits.softmax(-1)[:, 1]
        assert torch.allclose(prob, ref, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_from_word_embeddings_equals_forward_from_ids(tiny_root, family):
    model = tiny_model(tiny_root, family, "cross")
    batch = model.tokenize(Q * 2, D + ["a short one"])
    embeds = model.word_embeddings()(batch.input_ids)
    assert torch.allclose(model.forward_embeds(batch), model.forward_embeds(batch, embeds),
                          atol=1e-6)


def test_bi_encoder_pooling_and_gradients(tiny_root):
    cls = tiny_model(tiny_root, "bert", pooling="cls", similarity="dot")
    mean = tiny_model(tiny_root, "bert", pooling="mean", similarity="dot")
    batch = cls.tokenize(D, "doc")
    hidden = cls.doc_encoder(input_ids=batch.input_ids, **batch.model_inputs()).last_hidden_state
    assert torch.allclose(cls.forward_embeds(batch), hidden[:, 0], atol=1e-6)
    assert torch.allclose(mean.forward_embeds(batch), hidden.mean(1), atol=1e-6)
    score = mean.score(Q, D)
    score.sum().backward()
    assert mean.word_embeddings().weight.grad.abs().sum() > 0


def test_dpr_style_pair_uses_two_encoders(tiny_root):
    doc_dir = tiny_model_dir(tiny_root, "bert", seed=1)
    query_dir = tiny_model_dir(tiny_root, "bert", seed=2)
    model = load_model(str(doc_dir), query_model=str(query_dir), device="cpu")
    assert set(model.encoders()) == {"query", "doc"} and model.similarity_name == "dot"
    q, d = model.encode_queries(Q), model.encode_docs(Q)
    assert not torch.allclose(q, d)  # same text, different encoders
    assert torch.allclose(model.score(Q, D), (q * model.encode_docs(D)).sum(-1), atol=1e-5)


def test_pair_segments_label_every_token(tiny_root):
    model = tiny_model(tiny_root, "bert", "cross")
    batch = model.tokenize(["cats", "what do dogs eat"], ["meat", "dogs eat meat and kibble"])
    seg = batch.segments[1].tolist()
    assert seg[0] == Segment.CLS and seg[-1] == Segment.END
    assert seg.count(Segment.QUERY) == 4 and seg.count(Segment.SEP) == 1
    assert batch.segments[0].tolist().count(Segment.PAD) > 0


@pytest.mark.real
def test_default_model_matches_sentence_transformers(default_model, data_dir):
    from sentence_transformers import SentenceTransformer

    from irlens.models import resolve_model_path

    assert isinstance(default_model, BiEncoder)
    assert (default_model.pooling, default_model.normalize) == ("mean", True)
    assert default_model.max_length == 256
    docs = [line for line in (data_dir / "scifact" / "corpus.jsonl").open()][:8]
    st = SentenceTransformer(resolve_model_path("default"), device="cpu")
    ours = default_model.encode_docs(docs, batch_size=3)
    ref = st.encode(docs, convert_to_tensor=True, batch_size=3)
    assert torch.allclose(ours, ref, atol=1e-5)


@pytest.mark.real
def test_default_model_bf16_scores_close_to_fp32(default_model):
    bf16 = load_model("default", device="cpu", dtype="bfloat16")
    assert bf16.dtype == torch.bfloat16
    assert torch.allclose(bf16.score(Q, D), default_model.score(Q, D), atol=0.03)


def test_bad_input_messages(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(IrlensError, match=r"^model path ./no/such/model does not exist"):
        load_model("./no/such/model")
    with pytest.raises(IrlensError, match=r"^unknown model 'no-such-org/no-such-model'"):
        load_model("no-such-org/no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IrlensError, match=r"has no config.json"):
        load_model(str(tmp_path / "empty"))
    model = tiny_model(tiny_root, "bert")
    with pytest.raises(IrlensError, match=r"^empty query at index 1; every query needs text"):
        model.encode_queries(["fine", "  "])
    with pytest.raises(IrlensError, match=r"^empty document at index 0"):
        model.encode_docs([""])
    with pytest.raises(IrlensError, match=r"list of strings"):
        model.encode_docs("one string")
    with pytest.raises(IrlensError, match=r"unknown dtype 'float8'"):
        load_model("default", dtype="float8")
    with pytest.raises(IrlensError, match=r"unknown device 'tpu'"):
        load_model("default", device="tpu")


def test_unknown_model_offline_is_refused_before_any_hub_call(monkeypatch):
    import transformers

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub (or its cache lookup with retries) was called")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_hub)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", no_hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(IrlensError, match=r"^unknown model 'no-such-org/no-such-model': not "
                                          r"found locally"):
        load_model("no-such-org/no-such-model", device="cpu")


def test_long_documents_are_truncated_with_a_count(tiny_root):
    model = tiny_model(tiny_root, "bert")
    long_doc = "word " * 500
    with pytest.warns(UserWarning, match=r"^2 of 3 documents were longer than 128 tokens"):
        vectors = model.encode_docs([long_doc, "short", long_doc])
    assert vectors.shape[0] == 3
    cross = tiny_model(tiny_root, "bert", "cross")
    with pytest.warns(UserWarning, match=r"^1 of 1 query-document pairs were longer"):
        cross.predict(Q, [long_doc])


def _st_folder(tiny_root, tmp_path, name: str, mode: str, include_prompt: bool,
               similarity: str, dense: bool, normalize: bool):
    """A tiny sentence-transformers folder built from sentence-transformers' own modules."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling

    torch.manual_seed(3)
    body = Transformer(str(tiny_model_dir(tiny_root, "bert", "bi")), max_seq_length=64)
    modules = [body, Pooling(32, mode, include_prompt=include_prompt)]
    if dense:
        modules.append(Dense(32, 16, activation_function=torch.nn.Tanh()))
    if normalize:
        modules.append(Normalize())
    st = SentenceTransformer(modules=modules, device="cpu", similarity_fn_name=similarity,
                             prompts={"query": "query: ", "document": "passage: "})
    st.save(str(tmp_path / name))
    return tmp_path / name


@pytest.mark.parametrize(
    "mode,include_prompt,similarity,dense,normalize",
    [("mean", False, "euclidean", True, True), ("cls", True, "manhattan", True, False),
     ("max", False, "dot", False, False), ("mean", True, "cosine", True, True)])
def test_sentence_transformers_folder_scores_like_sentence_transformers(
        tiny_root, tmp_path, mode, include_prompt, similarity, dense, normalize):
    from sentence_transformers import SentenceTransformer

    folder = _st_folder(tiny_root, tmp_path, "st", mode, include_prompt, similarity, dense,
                        normalize)
    st = SentenceTransformer(str(folder), device="cpu")
    model = load_model(str(folder), device="cpu")
    assert model.similarity_name == similarity
    queries = ["what do cats eat", "salmon"]
    docs = D + ["dogs bark at night", "mice eat grain and seeds"]
    q_ref = st.encode_query(queries, convert_to_tensor=True)
    d_ref = st.encode_document(docs, convert_to_tensor=True)
    q, d = model.encode_queries(queries), model.encode_docs(docs)
    assert q.shape[-1] == (16 if dense else 32)
    torch.testing.assert_close(q, q_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(d, d_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.similarity(q, d), st.similarity(q_ref, d_ref),
                               atol=1e-4, rtol=1e-4)
    pairs = model.score(queries, docs[:2])
    torch.testing.assert_close(pairs.detach(), st.similarity_pairwise(q_ref, d_ref[:2]),
                               atol=1e-4, rtol=1e-4)


def test_sentence_transformers_folder_with_an_unsupported_order_is_refused(tiny_root, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling

    body = Transformer(str(tiny_model_dir(tiny_root, "bert", "bi")))
    st = SentenceTransformer(modules=[body, Pooling(32, "mean"), Normalize(), Dense(32, 8)],
                             device="cpu")
    st.save(str(tmp_path / "odd"))
    with pytest.raises(IrlensError, match=r"has a Dense module after pooling and Normalize"):
        load_model(str(tmp_path / "odd"), device="cpu")


def _full_hash(model, sha1=hashlib.sha1) -> str:
    """The fingerprint recomputed from scratch: config, every weight, the edits in force."""
    digest = sha1(model._config_key().encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy())
    digest.update("|".join(model.active_edits).encode())
    return digest.hexdigest()[:16]


class _CountingSha1:
    """hashlib.sha1 that counts its calls (the weights are hashed with one sha1 each)."""

    def __init__(self, real):
        self.real, self.calls = real, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.real(*args, **kwargs)


def test_fingerprint_is_hashed_once_per_weight_state(tiny_root, monkeypatch):
    from irlens.editing import Edit
    from irlens.hooks import ablate

    model = tiny_model(tiny_root, "bert")
    sha1 = _CountingSha1(hashlib.sha1)
    monkeypatch.setattr(hashlib, "sha1", sha1)
    intact = model.fingerprint
    assert sha1.calls == 1 and intact == _full_hash(model)
    assert model.fingerprint == intact and sha1.calls == 1  # a second access: no rehash
    with ablate(model, "layer.0.ffn.out", units=[0, 1]):  # a hook, not a weight change
        ablated = model.fingerprint
        assert ablated != intact and ablated == _full_hash(model)
    assert model.fingerprint == intact
    calls = sha1.calls
    name, weight = next(iter(model.named_parameters()))
    edit = Edit("test", {name: torch.ones_like(weight)})
    with edit.applied(model):  # the weights change in place: hashed again
        edited = model.fingerprint
        assert sha1.calls == calls + 1 and edited != intact and edited == _full_hash(model)
        assert model.fingerprint == edited and sha1.calls == calls + 1
    assert model.fingerprint == intact  # restored bit-identically: the old fingerprint
    with torch.no_grad():  # an optimiser-style in-place update is seen too
        weight.mul_(2)
    assert model.fingerprint == _full_hash(model) != intact
    with torch.no_grad():
        weight.div_(2)
    assert model.fingerprint == intact
    model.half()  # new weight tensors
    assert model.fingerprint == _full_hash(model) != intact
    model.float()  # (rounded through float16: not the intact weights)
    assert model.fingerprint == _full_hash(model)
