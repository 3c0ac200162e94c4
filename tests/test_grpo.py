import torch

from apiary.jobs.base import Job, Task
from apiary.jobs.function import FunctionSource
from apiary.jobs.scoring import Scorer
from apiary.learners.grpo import GRPOConfig, GRPOLearner, group_advantages, policy_loss
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.logprobs import completion_logprobs


def test_group_advantages_are_reward_minus_group_mean():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(group_advantages(rewards), torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]))


def test_policy_loss_counts_only_completion_tokens():
    logprobs = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    loss = policy_loss(logprobs, mask, torch.tensor([1.0, -1.0]))
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(-(1.0 * -3.0 + -1.0 * -0.5) / 2))
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-0.5, -0.5, 0.0], [0.5, 0.0, 0.0]]))


def test_kl_term_is_zero_at_the_reference_and_positive_away():
    logprobs, mask = torch.tensor([[-1.0, -2.0]]), torch.ones(1, 2)
    zero_adv = torch.zeros(1)
    assert policy_loss(logprobs, mask, zero_adv, logprobs.clone(), kl_coef=1.0) == 0
    assert policy_loss(logprobs, mask, zero_adv, logprobs - 0.5, kl_coef=1.0) > 0


def first_token_job(target: str) -> Job:
    """Reward 1 when the completion starts with `target`: a signal a random tiny model can find."""
    source = FunctionSource(lambda i: (f"say {target} #{i}", target), heldout_size=4)
    return Job("say", source, Scorer("starts", lambda c, a: float(c.strip().startswith(a))), max_tokens=3)


def test_grpo_step_moves_lora_toward_rewarded_completions(tiny_core):
    torch.manual_seed(0)
    model = adapters.attach(tiny_core.model, LoraSpec(rank=4, alpha=8))
    try:
        learner = GRPOLearner(model, tiny_core.tokenizer, first_token_job("x"),
                              GRPOConfig(prompts_per_step=2, samples_per_prompt=4, learning_rate=5e-2), tiny_core.stop_token_ids)
        tasks = learner.job.source.train(0, 2)
        samples = learner.rollout(tasks)
        for i, s in enumerate(samples):  # hand out rewards: the first sample of each group wins
            s.score = 1.0 if i % 4 == 0 else 0.0
        prompts = [samples[0].prompt_ids, samples[4].prompt_ids]
        index = [i // 4 for i in range(8)]
        pad = tiny_core.tokenizer.pad_token_id
        with torch.no_grad():
            before, mask = completion_logprobs(model, prompts, [s.ids for s in samples], index, pad)
        lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        advantages = group_advantages(torch.tensor([s.score for s in samples]).view(2, 4))
        learner._update([(s, float(a)) for s, a in zip(samples, advantages.view(-1))])
        changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, lora_before[n])]
        assert changed, "LoRA parameters did not change"
        assert all("lora_" in n for n in changed)
        with torch.no_grad():
            after, _ = completion_logprobs(model, prompts, [s.ids for s in samples], index, pad)
        gain = ((after - before) * mask).sum(1)
        assert gain[0] > 0 and gain[4] > 0  # winners got more likely
        assert gain[[1, 2, 3, 5, 6, 7]].mean() < gain[[0, 4]].mean()
    finally:
        adapters.detach(model)


def test_groups_with_equal_rewards_are_not_trained(tiny_core):
    model = adapters.attach(tiny_core.model, LoraSpec(rank=4, alpha=8))
    try:
        never = Job("never", FunctionSource(lambda i: (f"q{i}", "zzz"), heldout_size=2), Scorer("never", lambda c, a: 0.0))
        learner = GRPOLearner(model, tiny_core.tokenizer, never, GRPOConfig(prompts_per_step=2, samples_per_prompt=3), tiny_core.stop_token_ids)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        samples, stats = learner.step(learner.job.source.train(0, 2))
        assert len(samples) == 6 and stats.trained_samples == 0 and stats.reward_mean == 0.0
        assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if p.requires_grad)
    finally:
        adapters.detach(model)
