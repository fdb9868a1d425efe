"""The evaluation's main path: each prompt goes through the running router (Route) and observer (Ingest,
RecordFeedback) over gRPC, and the router learns from the observer's reward stream as in production."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable

import grpc

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp.router.v1 import router_pb2, router_pb2_grpc
from atp_common.channels import open_channel
from atp_common.errors import Unavailable, from_rpc_error
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


class _LearnedWatch:
    """Follows the router's WatchPolicy stream and tells when a route's published arms hold given totals.

    Keeps only the latest snapshot's totals (bounded); the reading task is owned and cancelled on close.
    """

    def __init__(self, stub: router_pb2_grpc.RouterServiceStub, route: str) -> None:
        self._stub = stub
        self._route = route
        self._totals: tuple[float, float] | None = None
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._follow(), name="eval-policy-watch")

    async def _follow(self) -> None:
        # Long-lived on purpose (no deadline); the replay's own deadline bounds every wait on it.
        call = self._stub.WatchPolicy(router_pb2.WatchPolicyRequest(replica_id=REPLICA_ID))
        try:
            async for response in call:
                route = next((r for r in response.snapshot.routes if r.name == self._route), None)
                if route is None or not route.arms:
                    continue  # no learning state yet: the router has not bootstrapped
                # Pulls and Beta "successes" (alpha grows by each outcome's quality) of the global arms.
                self._totals = (sum(a.pulls for a in route.arms), sum(a.alpha for a in route.arms))
                self._changed.set()
                self._changed = asyncio.Event()
        finally:
            call.cancel()

    async def totals(self, timeout_s: float) -> tuple[float, float]:
        """The first published totals (waiting for the first snapshot)."""
        return await self.wait_for(lambda _: True, timeout_s)

    async def wait_for(
        self, accept: Callable[[tuple[float, float]], bool], timeout_s: float
    ) -> tuple[float, float]:
        """Wait until the latest published totals are accepted."""

        async def wait() -> tuple[float, float]:
            while True:
                changed = self._changed
                if self._totals is not None and accept(self._totals):
                    return self._totals
                if self._task.done():
                    self._task.result()  # raises the stream's error
                    raise Unavailable("the router's policy stream ended")
                await changed.wait()

        try:
            return await asyncio.wait_for(wait(), timeout_s)
        except TimeoutError:
            raise Unavailable(f"the router did not publish what it learned within {timeout_s}s") from None

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await self._task


def _holds(pulls: float, alpha: float) -> Callable[[tuple[float, float]], bool]:
    """Accepts published totals equal to these (floating-point sums, so within a relative 1e-6)."""

    def accept(totals: tuple[float, float]) -> bool:
        return abs(totals[0] - pulls) < 1e-6 and abs(totals[1] - alpha) < 1e-6 * max(1.0, alpha)

    return accept


async def _replay_one(
    router: router_pb2_grpc.RouterServiceStub,
    observer: observer_pb2_grpc.ObserverServiceStub,
    dataset: Dataset,
    prompt: Prompt,
    route: str,
    params: chat_pb2.GenerationParams | None,
    timeout_s: float,
) -> str:
    """One prompt as production sees it: routed, its outcome observed, its quality fed back; the model
    the router chose."""
    started_ns = time.time_ns()
    reply = await router.Route(
        router_pb2.RouteRequest(tenant=TENANT, model=route, messages=messages(prompt), params=params),
        timeout=timeout_s,
        wait_for_ready=True,
    )
    decision = reply.decision
    chosen: str = decision.candidates[0].model
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
    return chosen


async def replay_over_grpc(
    dataset: Dataset,
    router_addr: str,
    observer_addr: str,
    *,
    timeout_s: float = 10.0,
    route: str = ROUTE,
    sync_every: int = 0,
    progress: Callable[[int], None] | None = None,
    params: chat_pb2.GenerationParams | None = None,
) -> list[str]:
    """Replay every prompt in order; returns the model the router chose for each.

    Per prompt: Route (the router computes the features from the messages), an Observation of the
    outcome (Ingest, awaited until committed), then the quality as feedback (RecordFeedback), in
    production's order. The router learns from the observer's reward stream and publishes at its own
    bounded rate. With `sync_every` = N > 0, after every N prompts the replay waits until the router has
    published a snapshot holding every outcome and feedback so far: the policy then changes exactly every
    N requests, whatever the machine's speed, so a run is reproducible (and matches the in-process kernel
    run with the same N). With 0 the replay never waits and decisions lag by up to a snapshot interval.
    """
    router_channel = open_channel(router_addr)
    observer_channel = open_channel(observer_addr)
    router = router_pb2_grpc.RouterServiceStub(router_channel)
    observer = observer_pb2_grpc.ObserverServiceStub(observer_channel)
    watch = _LearnedWatch(router, route) if sync_every > 0 else None
    choices: list[str] = []
    try:
        if watch is not None:
            base_pulls, base_alpha = await watch.totals(timeout_s)
        pulls, quality = 0, 0.0
        for number, prompt in enumerate(dataset.prompts, 1):
            chosen = await _replay_one(router, observer, dataset, prompt, route, params, timeout_s)
            choices.append(chosen)
            pulls += 1
            quality += min(max(prompt.quality[chosen], 0.0), 1.0)
            if watch is not None and number % sync_every == 0:
                await watch.wait_for(_holds(base_pulls + pulls, base_alpha + quality), timeout_s)
            if progress is not None:
                progress(number)
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc) from exc
    finally:
        if watch is not None:
            await watch.close()
        await router_channel.close()
        await observer_channel.close()
    return choices
