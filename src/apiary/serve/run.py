"""`apiary serve`: build the service and the app, and run uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from apiary.evals.gate import GateConfig
from apiary.hive.feedback_learning import LearningConfig
from apiary.serve.app import check_host, create_app
from apiary.serve.service import ServeConfig, Service
from apiary.serve.tenants import load_tenants


def run_server(hive: str | Path | None, host: str, port: int, keys: str | Path | None = None, core: str | None = None,
               template: str | None = None, max_batch: int | None = None, learn: bool = True,
               min_feedback: int = LearningConfig.min_feedback, gate: GateConfig = GateConfig(),
               requests_per_minute: int = ServeConfig.requests_per_minute,
               text_learner: str = LearningConfig.text_learner, document_steps: int = LearningConfig.document_steps,
               generation_timeout: float = ServeConfig.generation_timeout, body_timeout: float = ServeConfig.body_timeout,
               prefill_chunk: int = ServeConfig.prefill_chunk, distil_back: bool = LearningConfig.distil_back,
               learning_rates: dict[str, float] | None = None, precision: str = ServeConfig.precision) -> None:
    tenants = load_tenants(keys)
    check_host(host, tenants)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = ServeConfig(max_batch=max_batch or ServeConfig.max_batch, learn=learn, requests_per_minute=requests_per_minute,
                         generation_timeout=generation_timeout, body_timeout=body_timeout, prefill_chunk=prefill_chunk,
                         precision=precision, learning=LearningConfig(min_feedback=min_feedback, gate=gate, text_learner=text_learner,
                                                 document_steps=document_steps, distil_back=distil_back,
                                                 learning_rates=LearningConfig().learning_rates | (learning_rates or {})))
    service = Service(hive, core=core, config=config, template=template)
    uvicorn.run(create_app(service, tenants), host=host, port=port, log_level="info")
