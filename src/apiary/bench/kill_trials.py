"""What every kill trial shares: the tiny core, the command as its own process, the SIGKILL, the check
after it and the figures (bench/kills.py runs them; one module per command: kill_learn, kill_serve,
kill_consolidate).

A trial kills an `apiary` command with SIGKILL at a seeded moment, then runs `apiary check`
(store.check) on the hive: damage (a row pointing at a missing or corrupt artifact, a damaged
database) makes the check unclean; leftovers of the kill (staging directories, versions written but
not recorded) are counted and removed by the safe repair. Then the command is taken up again
(resumed, restarted, run again) and what was recorded or acknowledged before the kill is counted
against what the hive holds after it: items lost.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from apiary.store.check import DAMAGE, LEFTOVER, check_hive

APIARY = [sys.executable, "-c", "from apiary.cli import main; main()"]


@dataclass
class Trial:
    kill_at: float  # seconds after the start (or after the moment aimed at, see `moment`)
    killed: bool  # False: the command had finished before the moment came
    moment: str = ""  # what the command was doing when the kill came (per command; e.g. "learning run")
    damage_after_kill: list[str] = field(default_factory=list)
    leftovers: int = 0  # removed by the safe repair
    recorded: int = 0  # items recorded or acknowledged when it was killed (per command)
    resumed: bool = False  # taken up again after the kill: resumed, restarted, run again
    lost: int = 0  # items recorded or acknowledged before the kill, gone after taking up again, plus damage then


@dataclass
class KillReport:
    command: str
    trials: int
    killed: int
    clean_checks: int  # killed hives with no damage (leftovers aside)
    leftovers_repaired: int
    items_at_kills: int  # items recorded when the kills came, summed over trials
    resumed: int
    items_lost: int
    seconds_per_run: float  # the window the kill moments were drawn from
    moments: dict[str, int]  # kills by what the command was doing
    per_trial: list[Trial]


def summarise(command: str, done: list[Trial], seconds: float) -> KillReport:
    moments: dict[str, int] = {}
    for t in done:
        if t.killed:
            moments[t.moment] = moments.get(t.moment, 0) + 1
    return KillReport(command=command, trials=len(done), killed=sum(t.killed for t in done),
                      clean_checks=sum(t.killed and not t.damage_after_kill for t in done),
                      leftovers_repaired=sum(t.leftovers for t in done), items_at_kills=sum(t.recorded for t in done),
                      resumed=sum(t.resumed for t in done), items_lost=sum(t.lost for t in done),
                      seconds_per_run=round(seconds, 1), moments=moments, per_trial=done)


@contextmanager
def scratch():
    """A directory for the trials' hives, removed after; converted cores are cached there unless
    APIARY_CACHE says where."""
    with tempfile.TemporaryDirectory(prefix="apiary-kill-") as directory:
        root = Path(directory)
        os.environ.setdefault("APIARY_CACHE", str(root / "cache"))
        yield root


def tiny_core(out: Path) -> Path:
    """A 2-layer random Llama with the bundled core's tokenizer, saved as a HF directory (as the tests' fixture)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from apiary.models.core import resolve_core_dir

    tokenizer = AutoTokenizer.from_pretrained(resolve_core_dir(), local_files_only=True)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def apiary(args: list[str], output=subprocess.DEVNULL, errors=subprocess.PIPE) -> subprocess.Popen:
    """An `apiary` command as its own process. A process to be killed gets DEVNULL (or a file) for its
    output, so that an unread pipe never blocks it."""
    return subprocess.Popen([*APIARY, *args], stdout=output, stderr=errors)


def finish(process: subprocess.Popen, what: str) -> bool:
    """Wait for a command that is not killed; False (its error printed) if it failed."""
    _, err = process.communicate()
    if process.returncode != 0:
        print(f"{what} failed: {(err or b'').decode()[-2000:]}", file=sys.stderr)
    return process.returncode == 0


def kill_after(process: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL the process `seconds` from now unless it ends first; whether it was killed."""
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        kill(process)
        return True


def kill(process: subprocess.Popen) -> None:
    process.kill()  # SIGKILL
    process.wait()


def check_after_kill(hive: Path, trial: Trial) -> None:
    """`apiary check` on the killed hive (damage and leftovers into the trial), then the safe repair."""
    if not (hive / "hive.db").is_file():  # killed before the store was made: nothing to check
        return
    report = check_hive(hive)
    trial.damage_after_kill = [f.what for f in report.findings if f.level == DAMAGE]
    trial.leftovers = sum(f.level == LEFTOVER for f in report.findings)
    check_hive(hive, repair=True)


def damage(hive: Path) -> int:
    """Damage `apiary check` finds (0 for a whole hive)."""
    return sum(f.level == DAMAGE for f in check_hive(hive).findings)


def wait_until_serving(server: subprocess.Popen, url: str, seconds: float, log: Path | None = None) -> None:
    """Wait until the server process at `url` answers /health, or fail saying so (and where its log is)."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not come up (exit code {server.poll()})" + (f"; its log: {log}" if log else ""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def markdown(report: KillReport, title: str, what: str, command: str) -> str:
    """The section of docs/benchmarks.md: `what` says what was killed and how it was taken up again."""
    moments = ", ".join(f"{n} {m}" for m, n in sorted(report.moments.items())) or "-"
    return (f"## {title}\n\n`{command}`: {what}\n\n"
            "| trials | killed mid-run | killed while | checks without damage | leftovers repaired | items at the kills "
            "| taken up again | items lost |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n"
            f"| {report.trials} | {report.killed} | {moments} | {report.clean_checks} of {report.killed} "
            f"| {report.leftovers_repaired} | {report.items_at_kills} | {report.resumed} | {report.items_lost} |\n")
