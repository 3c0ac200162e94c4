"""Workers learning at once on a Ray cluster (hive.cluster): two simulated nodes of one CPU each
(ray.cluster_utils.Cluster, no dashboard), the tiny core, a step or two per worker; consolidation on what
they learned; a worker's actor killed mid-run while the other finishes; and the paths without Ray: no
address, no Ray imported; an address nobody answers at, one error naming it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from apiary import ConsolidateConfig, GateConfig, Hive, LearnPlan, WorkersFailed
from apiary.hive.cluster import NAMESPACE, ClusterUnreachable, actor_name
from apiary.hive.mix import DEFAULT_LEARNERS
from apiary.learners.grpo import GRPOConfig
from apiary.store import schema

CHAIN = ("min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=4")
CONFIG = GRPOConfig(prompts_per_step=2, samples_per_prompt=2, max_new_tokens=3, learning_rate=1e-2)
SRC = str(Path(__file__).resolve().parents[1] / "src")
SLOW = pytest.mark.skipif(not os.environ.get("APIARY_SLOW_TESTS"), reason="a minute or more: set APIARY_SLOW_TESTS=1")


def plan(worker: str, steps: int, **settings) -> LearnPlan:
    """A plain rl run unless `learners` is given (these tests are about where runs happen, not how they learn)."""
    return LearnPlan("rg:chain_sum", worker, overrides=CHAIN, steps=steps, config=CONFIG, release="ungated",
                     **({"learners": ("rl",)} | settings))


@pytest.fixture(scope="module")
def cluster():
    """A head and one more node, one CPU each, small object stores; shut down afterwards, whatever happens."""
    pytest.importorskip("ray", reason="pip install -e '.[cluster]'")
    from ray.cluster_utils import Cluster

    small = {"num_cpus": 1, "object_store_memory": 80 * 1024**2}
    nodes = Cluster(initialize_head=True, head_node_args={**small, "include_dashboard": False})
    try:
        nodes.add_node(**small)
        nodes.wait_for_nodes()
        yield nodes
    finally:
        nodes.shutdown()


def test_two_workers_learn_at_once_on_a_two_node_cluster_and_the_hive_consolidates_them(tmp_path, tiny_core_dir, cluster):
    hive = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    # the default run (rl, then distil_back's closing phase: 2 + 1 steps), long enough for the two to overlap
    left, right = hive.learn_many([plan("left", 2, learners=DEFAULT_LEARNERS), plan("right", 2, learners=DEFAULT_LEARNERS)],
                                  cluster=cluster.address)
    assert (left.worker, right.worker) == ("left", "right") and left.steps == right.steps == 3
    with hive.store.engine.connect() as db:  # the two runs overlapped in time
        runs = {r.worker: r for r in db.execute(select(schema.runs))}
    assert runs["left"].started_at < runs["right"].finished_at and runs["right"].started_at < runs["left"].finished_at
    for result in (left, right):  # each actor wrote its own episodes and adapter into the one store
        assert result.episodes == 8 == len(hive.store.episodes(result.worker))
        assert hive.store.worker(result.worker).live_version == result.adapter_version >= 1
        assert Path(hive.store.adapter_dir(result.worker, result.adapter_version)).is_dir()
    config = ConsolidateConfig(method="linear", gate=GateConfig(tolerance=1.0, max_retention_kl=10.0))
    consolidated = hive.consolidate(config=config, show_progress=False)
    assert consolidated.version == 1
    (version,) = hive.store.core_versions()
    assert {s["worker"] for s in version.sources} == {"left", "right"}


def test_a_worker_killed_mid_run_resumes_from_its_checkpoint_while_another_finishes_and_a_third_fails_with_its_own_error(
        tmp_path, tiny_core_dir, cluster):
    import ray

    hive = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)  # learn_many uses this connection
    try:
        outcome = {}
        broken = LearnPlan("rg:no_such_task", "broken", steps=1)  # waits for a free CPU, then fails in its actor
        plans = [plan("steady", 2), plan("doomed", 40, checkpoint_every=1), broken]
        learning = threading.Thread(target=lambda: outcome.update(run=_catch(lambda: hive.learn_many(plans, cluster="auto"))))
        learning.start()
        deadline = time.monotonic() + 120
        while not hive.store.adapter_versions("doomed") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert hive.store.adapter_versions("doomed"), "the doomed worker never reached a checkpoint"
        ray.kill(ray.get_actor(actor_name("doomed"), namespace=NAMESPACE))
        learning.join(timeout=120)
        failed = outcome["run"]
        assert isinstance(failed, WorkersFailed) and list(failed.failures) == ["doomed", "broken"] and "doomed" in str(failed)
        assert failed.failures["broken"].startswith("UnknownTaskError: unknown reasoning-gym task 'no_such_task'")
        (steady,) = failed.results
        assert steady.worker == "steady" and steady.steps == 2 and len(hive.store.episodes("steady")) == 8
        written = {e.id for e in hive.store.episodes("doomed")}
        checkpoints = {v.version for v in hive.store.adapter_versions("doomed")}
        (resumed,) = hive.learn_many([plan("doomed", 1, checkpoint_every=1)], cluster="auto")
    finally:
        ray.shutdown()
    assert resumed.resumed and resumed.steps == 1
    assert written < {e.id for e in hive.store.episodes("doomed")}  # nothing written before the kill is lost
    assert checkpoints < {v.version for v in hive.store.adapter_versions("doomed")}


def _catch(fn):
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - handed to the test's thread to assert on
        return err


def test_an_unreachable_ray_address_is_one_error_naming_it(tmp_path, tiny_core_dir, monkeypatch):
    pytest.importorskip("ray", reason="pip install -e '.[cluster]'")
    hive, address = Hive(tmp_path / "hive", core=str(tiny_core_dir)), f"127.0.0.1:{_closed_port()}"
    with pytest.raises(ClusterUnreachable, match=address):
        hive.learn_many([plan("w", 1)], cluster=address)
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(ClusterUnreachable, match=address):
        hive.learn_many([plan("w", 1)])
    assert hive.store.workers() == []  # nothing half-written


def test_learn_for_several_workers_without_a_ray_address_runs_them_in_turn_and_imports_no_ray(tmp_path, tiny_core_dir):
    script = ("import json, sys\nfrom apiary.cli import main\n"
              "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
              "print(json.dumps(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))))")
    args = [sys.executable, "-c", script, "learn", "rg:chain_sum", *CHAIN, "--workers", "a,b", "--steps", "1", "--no-distil-back",
            "--prompts", "2", "--samples", "2", "--max-new-tokens", "3", "--release-ungated", "--hive", str(tmp_path / "hive"),
            "--core", str(tiny_core_dir), "--json"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": SRC}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results, ray_modules = [json.loads(line) for line in done.stdout.strip().splitlines()[-2:]]
    assert [r["worker"] for r in results] == ["a", "b"] and all(r["steps"] == 1 for r in results)
    assert ray_modules == []


def test_the_cli_names_an_unreachable_cluster_and_a_worker_given_twice(tmp_path, tiny_core_dir):
    from typer.testing import CliRunner

    from apiary.cli import app

    pytest.importorskip("ray", reason="pip install -e '.[cluster]'")
    address = f"127.0.0.1:{_closed_port()}"
    common = ["learn", "rg:chain_sum", *CHAIN, "--steps", "1", "--hive", str(tmp_path / "hive"), "--core", str(tiny_core_dir)]
    result = CliRunner().invoke(app, [*common, "--workers", "a,b", "--cluster", address])
    assert result.exit_code == 2 and address in result.output
    result = CliRunner().invoke(app, [*common, "--workers", "a,a"])
    assert result.exit_code == 2 and "names one twice" in result.output


def _hive_of_two_workers(path: Path, tiny_core_dir, random_adapter) -> Hive:
    """A hive whose workers "arith" and "times" each have a live adapter version 1 (random, seeds 0 and 1): what
    two learned workers leave behind, without learning."""
    from apiary.store.records import AdapterVersion

    hive = Hive(path, core=str(tiny_core_dir))
    for seed, (worker, spec) in enumerate([("arith", "rg:chain_sum"), ("times", "rg:products")]):
        hive.deploy(spec, worker, overrides=list(CHAIN))
        random_adapter(hive.store.adapter_dir(worker, 1), seed)
        hive.store.add_adapter_version(AdapterVersion(worker=worker, version=1, parent=0, step=1, final=True,
                                                      path=str(hive.store.adapter_dir(worker, 1))), [])
        hive.store.release_worker(worker, 1, "ungated")
    return hive


def test_the_consolidation_runs_as_one_ray_task_and_records_what_it_records_here(tmp_path, tiny_core_dir, random_adapter,
                                                                                   cluster):
    config = ConsolidateConfig(method="linear", gate=GateConfig(tolerance=1.0, max_retention_kl=10.0))
    here = _hive_of_two_workers(tmp_path / "here", tiny_core_dir, random_adapter)
    there = _hive_of_two_workers(tmp_path / "there", tiny_core_dir, random_adapter)
    local = here.consolidate(config=config, show_progress=False)
    remote = there.consolidate(config=config, show_progress=False, cluster=cluster.address, cpus=1)
    same = ("version", "parent", "method", "sources", "passed", "reasons", "released", "current_core")
    assert remote.model_dump(include=set(same)) == local.model_dump(include=set(same))
    assert remote.released and remote.current_core == 1 == there.store.current_core()
    assert [(j.job, j.worker) for j in remote.jobs] == [(j.job, j.worker) for j in local.jobs]
    assert [j.candidate for j in remote.jobs] == pytest.approx([j.candidate for j in local.jobs])  # greedy: the same
    (version,), (local_version,) = there.store.core_versions(), here.store.core_versions()
    assert (version.method, version.parent, version.sources) == (local_version.method, local_version.parent,
                                                                local_version.sources)
    assert Path(version.path).is_dir() and str(tmp_path / "there") in version.path  # written into the hive it opened
    (decision,), (local_decision,) = there.store.decisions("core:1"), here.store.decisions("core:1")
    assert decision.passed == local_decision.passed
    assert len(there.store.evals()) == len(here.store.evals())


def test_each_workers_eval_runs_as_its_own_ray_task_with_the_scores_measured_here_in_the_order_asked_and_a_failed_task_says_why(
        tmp_path, tiny_core_dir, random_adapter, cluster):
    import ray
    from typer.testing import CliRunner

    from apiary.cli import app
    from apiary.hive.cluster_tasks import TasksFailed

    hive = _hive_of_two_workers(tmp_path / "hive", tiny_core_dir, random_adapter)
    common = ["eval", "--hive", str(tmp_path / "hive"), "--core", str(tiny_core_dir), "--json"]
    local = CliRunner().invoke(app, [*common, "--workers", "times,arith"])
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)  # one connection: Ray's workers reused
    try:
        remote = CliRunner().invoke(app, [*common, "--workers", "times,arith", "--cluster", cluster.address])
        every = hive.eval(cluster="auto")  # no worker named: every worker's, as here
        core = hive.eval(jobs=[hive.job("rg:products", list(CHAIN))], cluster="auto")  # the job travels to the task
        with pytest.raises(TasksFailed) as failed:
            hive.eval(workers=["arith", "ghost"], cluster="auto")
        with pytest.raises(ValueError, match="no worker named 'ghost'"):  # the consolidation's own error, as here
            hive.consolidate(workers=["ghost"], cluster="auto")
    finally:
        ray.shutdown()
    assert local.exit_code == 0 == remote.exit_code, remote.output
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    assert [(r["worker"], r["adapter_version"]) for r in json.loads(remote.stdout)] == [("times", 1), ("arith", 1)]
    assert [(r.worker, r.score) for r in every] == [(r.worker, r.score) for r in hive.eval()]
    assert [(r.worker, r.job, r.score) for r in core] == [
        (r.worker, r.job, r.score) for r in hive.eval(jobs=[hive.job("rg:products", list(CHAIN))])]
    assert len(hive.store.evals()) == 2 + 2 + 2 + 1 + 1 + 2 + 1  # each eval, here or in a task, recorded in the one store
    assert [r.worker for r in failed.value.results] == ["arith"]
    assert failed.value.failures == {"worker 'ghost'": f"ValueError: no worker named 'ghost' in hive {tmp_path / 'hive'}"}


def test_an_unreachable_ray_address_for_consolidation_or_evals_is_one_error_naming_it_and_writes_nothing(
        tmp_path, tiny_core_dir, random_adapter, monkeypatch):
    from typer.testing import CliRunner

    from apiary.cli import app

    pytest.importorskip("ray", reason="pip install -e '.[cluster]'")
    hive, address = _hive_of_two_workers(tmp_path / "hive", tiny_core_dir, random_adapter), f"127.0.0.1:{_closed_port()}"
    with pytest.raises(ClusterUnreachable, match=address):
        hive.consolidate(cluster=address, show_progress=False)
    with pytest.raises(ClusterUnreachable, match=address):
        hive.eval(workers=["arith", "times"], cluster=address)
    monkeypatch.setenv("RAY_ADDRESS", address)
    common = ["--hive", str(tmp_path / "hive"), "--core", str(tiny_core_dir)]
    for command in (["consolidate", "--method", "linear"], ["eval", "--workers", "arith,times"]):
        result = CliRunner().invoke(app, [*command, *common])
        assert result.exit_code == 2 and address in result.output, result.output
    assert hive.store.core_versions() == [] and hive.store.decisions() == [] and hive.store.evals() == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_cluster_bench_reports_episodes_per_second_of_each_configuration_by_wall_and_learning_time():
    from apiary.bench.cluster import Figure, section

    figures = [Figure("in turn", 2, 16, 8.0, 4.0), Figure("ray", 2, 16, 5.0, 4.0)]
    text = section(figures, "python -m apiary.bench.cluster", "tiny settings.")
    assert text.startswith("## Workers on a Ray cluster\n") and "`python -m apiary.bench.cluster`" in text
    assert "| in turn | 2 | 16 | 8.0 | 2.00 | 4.0 | 4.00 |" in text and "| ray | 2 | 16 | 5.0 | 3.20 | 4.0 | 4.00 |" in text
