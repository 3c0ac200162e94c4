"""The serving engine: every model of a hive answered from one thread, many requests per forward.

A *lane* is one core version in memory with its running batch; worker adapters sit on their
core version's lane as PEFT adapters, so the core and any number of workers share one batch. A
*route* maps a model name ("core", "worker:NAME") to a lane and an adapter. Changing a route (a
new adapter version went live, a rollback) runs on the engine's thread between two decoding steps:
the new adapter is loaded completely, then the route is switched, so no request ever sees a
half-loaded adapter; requests already running finish on the adapter they started with, which is
unloaded when the last of them is done.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import PeftModel

from apiary.models import bf16
from apiary.models.core import MODEL_LOADS, Core
from apiary.models.decoder import BASE, Request, RunningBatch, check_prefill_chunk

log = logging.getLogger("apiary.serve")


@dataclass(frozen=True)
class Route:
    core_version: int
    adapter: str  # PEFT adapter name, or BASE
    adapter_version: int  # 0: the core alone


@dataclass
class Lane:
    core: Core
    batch: RunningBatch
    waiting: deque = field(default_factory=deque)

    @property
    def model(self):
        return self.batch.model

    def load(self, name: str, path: Path) -> None:
        if isinstance(self.model, PeftModel):
            self.model.load_adapter(str(path), adapter_name=name)
        else:
            self.batch.model = PeftModel.from_pretrained(self.core.model, str(path), adapter_name=name)
        self.model.eval()

    def unload(self, name: str) -> None:
        if isinstance(self.model, PeftModel) and name in self.model.peft_config and len(self.model.peft_config) > 1:
            if self.model.active_adapter == name:
                self.model.set_adapter(next(n for n in self.model.peft_config if n != name))
            self.model.delete_adapter(name)


class Engine:
    """Continuous batching over the lanes; at most `max_batch` rows decode (or join) together per lane;
    joining prompts are read at most `prefill_chunk` tokens per decoding step (0: whole, while the
    lane's running rows wait). `precision` "bf16": each lane's core is turned to bfloat16 when the lane
    opens (models.bf16.for_serving; the cores are the engine's own), where the CPU multiplies it natively;
    "int8": the same, with int8 weights for products of fewer than models.bf16.INT8_BELOW rows."""

    def __init__(self, max_batch: int, seed: int = 0, prefill_chunk: int = 0, precision: str = "float32"):
        check_prefill_chunk(prefill_chunk)  # refused here, not on the engine's thread
        self.max_batch, self.prefill_chunk = max_batch, prefill_chunk
        self.in_bf16 = bf16.usable(precision, torch.device("cpu"), "serving")
        self.int8_below = bf16.INT8_BELOW if precision == "int8" else 0
        self._generator = torch.Generator().manual_seed(seed)
        self._lanes: dict[int, Lane] = {}
        self._routes: dict[str, Route] = {}
        self._users: dict[tuple[int, str], int] = {}  # (lane, adapter) -> requests queued or running on it
        self._commands: list = []
        self._lock = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="apiary-engine", daemon=True)
        self._thread.start()

    # -- what other threads call ---------------------------------------------------------------
    def route(self, model: str) -> Route | None:
        with self._lock:
            return self._routes.get(model)

    def routes(self) -> dict[str, Route]:
        with self._lock:
            return dict(self._routes)

    def submit(self, model: str, request: Request) -> Route:
        """Queue `request` on `model`'s live route (KeyError: no such model); returns the route it got."""
        with self._lock:
            route = self._routes[model]
            request.adapter = route.adapter
            self._count_off_when_done(request, route.core_version)
            self._users[(route.core_version, route.adapter)] = self._users.get((route.core_version, route.adapter), 0) + 1
            self._lanes[route.core_version].waiting.append(request)
            self._lock.notify()
            return route

    def deploy(self, model: str, core: Core, adapter_dir: Path | None = None, adapter_version: int = 0) -> Route:
        """Make `model` answer with `core` (plus the adapter in `adapter_dir`); returns once it is live."""
        name = BASE if adapter_dir is None else f"{re.sub(r'[^A-Za-z0-9_]', '_', model)}__v{adapter_version}"
        route = Route(core.version, name, adapter_version)

        def switch() -> Route:
            if core.version not in self._lanes:
                if self.in_bf16:
                    bf16.for_serving(core.model, self.int8_below)
                batch = RunningBatch(core.model, core.tokenizer.pad_token_id, self._generator, self.prefill_chunk)
                self._lanes[core.version] = Lane(core, batch)
            lane = self._lanes[core.version]
            if adapter_dir is not None and not (isinstance(lane.model, PeftModel) and name in lane.model.peft_config):
                lane.load(name, adapter_dir)
            with self._lock:
                self._routes[model] = route
            return route

        return self.call(switch)

    def call(self, command):
        """Run `command()` on the engine's thread between two decoding steps; returns its result."""
        future: Future = Future()
        with self._lock:
            self._commands.append((command, future))
            self._lock.notify()
        return future.result()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._thread.join()

    # -- the engine's thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._lock:
                while not (self._stopping or self._commands or any(l.waiting or len(l.batch) for l in self._lanes.values())):
                    self._lock.wait()
                if self._stopping:
                    break
                commands, self._commands = self._commands, []
                admit = {v: self._take(lane) for v, lane in self._lanes.items()}
            for command, future in commands:
                try:
                    future.set_result(command())
                except Exception as err:  # noqa: BLE001 - handed to the caller
                    future.set_exception(err)
            with MODEL_LOADS.compute(), torch.inference_mode():
                for version, requests in admit.items():
                    self._guarded(self._lanes[version], lambda b, r=requests: b.admit(r), requests)
                for lane in self._lanes.values():
                    if len(lane.batch):
                        self._guarded(lane, lambda b: b.step(), [])
            self._unload_unused()
        for lane in self._lanes.values():
            lane.batch.fail("cancelled")
            for request in lane.waiting:
                self._end(request, "cancelled")

    def _take(self, lane: Lane) -> list[Request]:
        taken = []
        while lane.waiting and len(lane.batch) + len(taken) < self.max_batch:
            request = lane.waiting.popleft()
            if request.cancelled or request.overdue():  # its time ran out in the queue: never started
                self._end(request, "cancelled" if request.cancelled else "timeout")
            else:
                taken.append(request)
        return taken

    def _count_off_when_done(self, request: Request, version: int) -> None:
        """Count the request off its adapter when it ends, before telling its owner."""
        owner = request.on_done

        def done(r: Request) -> None:
            with self._lock:
                self._users[(version, r.adapter)] -= 1
            if owner is not None:
                owner(r)

        request.on_done = done

    def _guarded(self, lane: Lane, work, requests: list[Request]) -> None:
        """Run `work(batch)`; if the model raises, end the rows it held with finish_reason "error"."""
        try:
            work(lane.batch)
        except Exception:  # noqa: BLE001 - one bad batch must not stop the server
            log.exception("generation failed; ending the requests of this batch")
            lane.batch.fail("error")
            for request in requests:
                if request.finish_reason is None:
                    self._end(request, "error")

    def _end(self, request: Request, reason: str) -> None:
        request.finish_reason = reason
        if request.on_done is not None:
            request.on_done(request)

    def _unload_unused(self) -> None:
        with self._lock:
            live = {(r.core_version, r.adapter) for r in self._routes.values()}
            idle = [key for key, users in self._users.items() if users == 0 and key not in live]
            for key in idle:
                del self._users[key]
        for version, name in idle:
            if name != BASE:
                self._lanes[version].unload(name)
