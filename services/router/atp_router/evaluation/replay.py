"""The evaluation's main path: each prompt goes through the running router (Route) and observer (Ingest,
RecordFeedback) over gRPC, and the router learns from the observer's reward stream as in production."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable

import grpc

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp.router.v1 import router_pb2, router_pb2_grpc
from atp_common.channels import open_channel
from atp_common.errors import from_rpc_error
from atp_router.evaluation.dataset import Dataset, Prompt
from atp_router.evaluation.offline import ROUTE, TENANT, messages

REPLICA_ID = "atp-eval"


def observation(
    dataset: Dataset, prompt: Prompt, decision: chat_pb2.Decision, model: str, started_ns: int
) -> observer_pb2.Observation:
    """The observation an adapters replica would ship for this prompt answered by `model`."""
    provider = next((c.provider for c in decision.candidates if c.model == model), "")
    completion = prompt.completion_tokens[model]
    obs = observer_pb2.Observation(
        observation_id=uuid.uuid4().hex,
        request_id=prompt.id,
        tenant=TENANT,
        decision=decision,
        model=model,
        provider=provider,
        usage=chat_pb2.Usage(
            prompt_tokens=prompt.prompt_tokens,
            completion_tokens=completion,
        ),
        cost_usd=dataset.cost(prompt, model),
        status=observer_pb2.OBSERVATION_STATUS_OK,
        finish_reason="stop",
        attempts=1,
        replica_id=REPLICA_ID,
    )
    obs.started_at.FromNanoseconds(started_ns)
    obs.finished_at.FromNanoseconds(time.time_ns())
    return obs


async def _one_batch(obs: observer_pb2.Observation) -> AsyncIterator[observer_pb2.IngestRequest]:
    yield observer_pb2.IngestRequest(observations=[obs])


async def replay_over_grpc(
    dataset: Dataset,
    router_addr: str,
    observer_addr: str,
    *,
    timeout_s: float = 10.0,
    route: str = ROUTE,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Replay every prompt in order; returns the model the router chose for each.

    Per prompt: Route (the router computes the features from the messages), an Observation of the
    outcome (Ingest, awaited until committed), then the quality as feedback (RecordFeedback), in
    production's order. The router's snapshot follows the reward stream at its own bounded rate, so
    decisions lag the rewards by up to one snapshot interval, as they would in production.
    """
    router_channel = open_channel(router_addr)
    observer_channel = open_channel(observer_addr)
    router = router_pb2_grpc.RouterServiceStub(router_channel)
    observer = observer_pb2_grpc.ObserverServiceStub(observer_channel)
    choices: list[str] = []
    try:
        for number, prompt in enumerate(dataset.prompts, 1):
            started_ns = time.time_ns()
            reply = await router.Route(
                router_pb2.RouteRequest(tenant=TENANT, model=route, messages=messages(prompt)),
                timeout=timeout_s,
                wait_for_ready=True,
            )
            decision = reply.decision
            chosen = decision.candidates[0].model
            choices.append(chosen)
            obs = observation(dataset, prompt, decision, chosen, started_ns)
            await observer.Ingest(_one_batch(obs), timeout=timeout_s, wait_for_ready=True)
            await observer.RecordFeedback(
                observer_pb2.RecordFeedbackRequest(
                    decision_id=decision.decision_id,
                    tenant=TENANT,
                    score=prompt.quality[chosen],
                    source=REPLICA_ID,
                ),
                timeout=timeout_s,
            )
            if progress is not None:
                progress(number)
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc) from exc
    finally:
        await router_channel.close()
        await observer_channel.close()
    return choices
