"""Any core, not only chat models: a core without a chat template gets the plain prompt format (or
one the user names), every path that builds prompt tokens uses it, and the choice is recorded."""

from __future__ import annotations

import shutil

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from apiary import Hive
from apiary.learners.grpo import GRPOConfig
from apiary.models.core import load_core
from apiary.models.prompt_format import PLAIN, PromptFormatError, environment_turn_ids, prompt_ids, reply_ids
from apiary.serve.app import ServerThread, create_app
from apiary.serve.service import ServeConfig, Service
from apiary.serve.tenants import Tenants

ONE_DIGIT = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]


@pytest.fixture(scope="module")
def base_core_dir(tiny_core_dir, tmp_path_factory):
    """The tiny random Llama with its chat template removed: a base model, as many GGUF files are."""
    out = tmp_path_factory.mktemp("base-core")
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        if (tiny_core_dir / name).exists():
            shutil.copy(tiny_core_dir / name, out / name)
    tokenizer = AutoTokenizer.from_pretrained(tiny_core_dir, local_files_only=True)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def template_file(tmp_path):
    path = tmp_path / "qa.jinja"
    path.write_text("{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }}\n"
                    "{% else %}A: {{ m['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}"
                    "{% if add_generation_prompt %}A: {% endif %}")
    return path


def test_a_core_without_chat_template_gets_the_plain_format(base_core_dir):
    core = load_core(base_core_dir)
    assert core.prompt_format.name == PLAIN
    text = core.tokenizer.decode(prompt_ids(core.tokenizer, [{"role": "user", "content": "What is 2 + 3?"}]))
    assert text == "User: What is 2 + 3?\nAssistant: "
    assert reply_ids(core.tokenizer, "5")[-1] == core.tokenizer.eos_token_id in core.stop_token_ids


def test_multi_turn_framing_in_the_plain_format(base_core_dir):
    core = load_core(base_core_dir)
    tok = core.tokenizer
    reply = reply_ids(tok, "guess 4")  # ends on the stop token: not closed twice
    assert tok.decode(environment_turn_ids(tok, "too low", reply, core.stop_token_ids)) == "\nUser: too low\nAssistant: "
    open_reply = tok("guess 4", add_special_tokens=False)["input_ids"]  # cut off: closed by the framing
    assert tok.decode(environment_turn_ids(tok, "too low", open_reply, core.stop_token_ids)).startswith(tok.eos_token)


def test_a_chat_core_keeps_its_own_template(tiny_core_dir):
    core = load_core(tiny_core_dir)
    assert core.prompt_format.name == "chat"
    assert "<|im_start|>user" in core.tokenizer.decode(prompt_ids(core.tokenizer, [{"role": "user", "content": "hi"}]))


def test_a_named_template_is_used_and_chat_is_refused_for_a_base_core(base_core_dir, template_file):
    core = load_core(base_core_dir, template=str(template_file))
    assert core.prompt_format.name == str(template_file)
    assert core.tokenizer.decode(prompt_ids(core.tokenizer, [{"role": "user", "content": "hi"}])) == "Q: hi\nA: "
    with pytest.raises(PromptFormatError, match="no chat template"):
        load_core(base_core_dir, template="chat")
    with pytest.raises(PromptFormatError, match="unknown prompt format"):
        load_core(base_core_dir, template="nosuch")


def test_a_base_core_learns_evaluates_and_attempts_and_the_format_is_recorded(tmp_path, base_core_dir, template_file,
                                                                              monkeypatch):
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    hive = Hive(tmp_path / "hive", core=str(base_core_dir))
    config = GRPOConfig(prompts_per_step=2, samples_per_prompt=2, max_new_tokens=4)
    result = hive.learn("rg:chain_sum", "w", steps=1, learners=["rl"], config=config, overrides=ONE_DIGIT,
                        show_progress=False)
    assert result.steps == 1 and result.adapter_version == 1
    assert hive.eval(worker="w")[0].n > 0
    episodes = hive.attempt("rg:chain_sum", "w", 2, overrides=ONE_DIGIT)
    assert episodes[0].messages[-1]["role"] == "user" and len(episodes) == 2
    assert hive.store.worker("w").prompt_format == PLAIN
    named = Hive(tmp_path / "hive2", core=str(base_core_dir), template=str(template_file))
    named.deploy("rg:chain_sum", "q", overrides=ONE_DIGIT)
    assert named.store.worker("q").prompt_format == str(template_file)
    assert named.status()["base_core"]["prompt_format"] == str(template_file)


def test_a_served_chat_on_a_base_core(tmp_path, base_core_dir, monkeypatch):
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    config = ServeConfig(learn=False, watch_seconds=0.1, max_tokens=16)
    service = Service(tmp_path / "hive", core=str(base_core_dir), config=config)
    with ServerThread(create_app(service, Tenants(), max_body=4096)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0)
        reply = client.chat.completions.create(model="core", messages=[{"role": "user", "content": "What is 2 + 3?"}],
                                               max_tokens=8)
        assert reply.choices[0].message.content is not None
        assert httpx.get(server.url + "/health").json()["status"] == "ok"
