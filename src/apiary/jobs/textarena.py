"""TextArena single-player games as multi-turn jobs: `ta:GuessTheNumber-v0`, `ta:FrozenLake-v0`, ...

Each task is a seed (held-out seeds never meet training seeds, jobs.multiturn.SeededSource). The
game runs unwrapped (TextArena's `-raw` variant): the first user message is the game's prompt (and
board) followed by a one-line instruction on the move format (FrozenLake's comes after two example
turns, `EXAMPLES`), and each later one is what the game said after the worker's move: hints, the
new board, or why a move was invalid. TextArena forgives one invalid move (it asks again) and ends the game
at the second in a row.

Score (documented choice, the same for every game): 1 for a win. Otherwise PARTIAL (0.4) times the
game's own partial reward (how close the last guess was, how far along the path, ...; nothing when
the game ended on an invalid move), plus VALID_WEIGHT (0.2) times the fraction of the worker's moves
that were valid: progress and valid play count, but never as much as winning. Held-out evals count
wins (`success`), played at temperature 0.7 with a fixed seed.

TextArena draws from Python's process-global `random` (seeded once at reset); every call into a
game runs on that game's own random stream (jobs.multiturn.own_random), so episodes played side
by side or one after another are reproducible from their seeds.
"""

from __future__ import annotations

import threading

from apiary.extras import require
from apiary.jobs.base import Job, Turn, did_you_mean
from apiary.jobs.multiturn import ENVIRONMENT_SCORER, SeededSource, own_random, valid_credit

# Single-player games a 135M model can make progress on, that import nothing heavy and call no remote judge.
# game -> (max worker turns, invalid moves included; the instruction after the game's own prompt)
GAMES = {
    "GuessTheNumber-v0": (12, "Reply with only your guess in square brackets, for example [10]."),
    "FrozenLake-v0": (12, "Reply with only one move in square brackets: [up], [down], [left] or [right]."),
    "TowerOfHanoi-v0": (20, "Reply with only one move, the source and target towers in square brackets, for example [A C]."),
    "Mastermind-v0": (24, "Reply with only your guess of four numbers in square brackets, for example [1 2 3 4]."),
    "Minesweeper-v0-small": (30, "Reply with only one cell to reveal in square brackets, row and column, for example [2 3]."),
}
# Example turns shown before a game's prompt, where the core does not follow the move format without them
# (FrozenLake: 0 of 16 sampled first moves were bracketed from the game's prompt alone, 12 of 16 after these).
EXAMPLES = {
    "FrozenLake-v0": [
        {"role": "user", "content": "You are on a frozen lake. Reply with only one move in square brackets: "
                                    "[up], [down], [left] or [right]."},
        {"role": "assistant", "content": "[down]"}, {"role": "user", "content": "You moved down."},
        {"role": "assistant", "content": "[right]"},
    ],
}
# Held-out games are played at this temperature (seeded): greedy, the 135M core repeats one guess or move
# (after 6 steps of GuessTheNumber: sampled play won 84% of training games, greedy play 22% of held-out ones).
EVAL_TEMPERATURE = 0.7
PARTIAL = 0.4  # weight of a game's partial reward when it was not won
_LOCK = threading.Lock()  # the global random stream is swapped per call; one game call at a time


class UnknownGameError(ValueError):
    pass


def check_game(game: str) -> None:
    if game not in GAMES:
        raise UnknownGameError(f"unsupported TextArena game {game!r}{did_you_mean(game, GAMES, 3, 0.4)} "
                               f"(supported: {', '.join(GAMES)})")


class TextArenaEpisode:
    """One game of `game` from `seed`, speaking the jobs.multiturn.Environment protocol."""

    def __init__(self, game: str, seed: int):
        import textarena  # imported on first use: it is only needed by TextArena jobs

        self._random, self.moves, self.invalid = [None], 0, 0
        with _LOCK, own_random(self._random):
            self.env = textarena.make(f"{game}-raw")
            self.env.reset(num_players=1, seed=seed)
            self._opening = self._read()

    def start(self) -> str:
        return self._opening

    def step(self, reply: str) -> Turn:
        with _LOCK, own_random(self._random):
            done, _ = self.env.step(reply)
            state = self.env.state
            invalid = bool(getattr(state, "error_count", 0)) or bool(done and state.game_info[0].get("invalid_move"))
            message = self._read()
            self.moves, self.invalid = self.moves + 1, self.invalid + int(invalid)
            if not done:
                return Turn(message=message, invalid=invalid, score=valid_credit(self.moves, self.invalid))
            rewards, info = self.env.close()
        won = rewards[0] >= 1.0 and not info[0].get("invalid_move")
        partial = 0.0 if info[0].get("invalid_move") else PARTIAL * min(1.0, max(0.0, float(rewards[0])))
        reason = info[0].get("reason") or ""
        return Turn(message=f"{message}\n{reason}".strip(), done=True, invalid=invalid, success=won,
                    score=1.0 if won else partial + valid_credit(self.moves, self.invalid))

    def _read(self) -> str:
        """What the game said since the worker's last move (its own echo of the move left out)."""
        from textarena import ObservationType

        _, observations = self.env.get_observation()
        return "\n".join(m for _, m, kind in observations if kind != ObservationType.PLAYER_ACTION).strip()


def textarena_job(game: str, heldout_size: int = 50, max_turns: int | None = None, name: str | None = None) -> Job:
    check_game(game)
    require("games", "textarena")
    source = SeededSource(f"ta:{game}", heldout_size=heldout_size)
    turns, instruction = GAMES[game]
    return Job(name=name or game.split("-v")[0], source=source, scorer=ENVIRONMENT_SCORER, max_tokens=16,
               instruction=instruction, environment=lambda task: TextArenaEpisode(game, task.metadata["seed"]),
               max_turns=max_turns or turns, eval_temperature=EVAL_TEMPERATURE, examples=EXAMPLES.get(game, []))

