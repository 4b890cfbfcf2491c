"""Drives workflows on a Temporal server for the temporal tests, with the `temporalio` client.

    temporal_client.py ADDRESS TASK_QUEUE run WORKFLOW ARGS_JSON
        runs one workflow to its end
    temporal_client.py ADDRESS TASK_QUEUE many WORKFLOW ARGS_JSON COUNT
        runs COUNT workflows at once
    temporal_client.py ADDRESS TASK_QUEUE cart
        CartWorkflow: signals add(apple), add(pear), queries items, signals checkout
    temporal_client.py ADDRESS TASK_QUEUE cancel
        starts CancellableWorkflow, cancels it, waits for its result
    temporal_client.py ADDRESS TASK_QUEUE start WORKFLOW ARGS_JSON ID [TASK_TIMEOUT_SECONDS]
        starts a workflow and returns at once
    temporal_client.py ADDRESS TASK_QUEUE result ID
        waits for a started workflow's result
    temporal_client.py ADDRESS TASK_QUEUE query ID NAME
        a query's answer
    temporal_client.py ADDRESS TASK_QUEUE signal ID NAME
        sends a signal without arguments
    temporal_client.py ADDRESS TASK_QUEUE events ID
        the workflow's history as event type names (EVENT_TYPE_...)
    temporal_client.py ADDRESS TASK_QUEUE update
        CartWorkflow: updates add(apple) and add(pear) (each answers the count of items), an
        update add("") the validator rejects, signal checkout
    temporal_client.py ADDRESS TASK_QUEUE stack
        CartWorkflow: the __stack_trace query while it waits, then signal checkout

Each prints one JSON line: {"result": ...} or {"error": kind, "message": ..., "cause": ...}
(or, for many, {"results": [...], "errors": [...], "seconds": ...}). Every wait is bounded.
"""

import asyncio
import json
import os
import sys
import time
import uuid
from datetime import timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError

WAIT_SECONDS = 120


def describe(error):
    cause = getattr(error, "cause", None)
    return {
        "error": type(error).__name__,
        "message": str(error),
        "cause": None if cause is None else {
            "kind": type(cause).__name__,
            "message": getattr(cause, "message", str(cause)),
            "type": getattr(cause, "type", None),
        },
    }


async def run_one(client, queue, workflow, args, workflow_id=None):
    handle = await client.start_workflow(
        workflow, args=args, id=workflow_id or f"{workflow}-{uuid.uuid4()}", task_queue=queue,
        execution_timeout=None,
    )
    return await asyncio.wait_for(handle.result(), WAIT_SECONDS)


async def main(address, queue, scenario, rest):
    client = await Client.connect(address, namespace="default")
    try:
        if scenario == "run":
            print(json.dumps({"result": await run_one(client, queue, rest[0], json.loads(rest[1]))}))
        elif scenario == "many":
            count = int(rest[2])
            latencies = []

            async def timed():
                begun = time.monotonic()
                result = await run_one(client, queue, rest[0], json.loads(rest[1]))
                latencies.append(time.monotonic() - begun)
                return result

            started = time.monotonic()
            outcomes = await asyncio.gather(*(timed() for _ in range(count)), return_exceptions=True)
            seconds = time.monotonic() - started
            latencies.sort()
            pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None
            print(json.dumps({
                "results": [o for o in outcomes if not isinstance(o, BaseException)],
                "errors": [describe(o) for o in outcomes if isinstance(o, BaseException)],
                "seconds": seconds,
                "per_second": count / seconds,
                "p50_seconds": pick(0.5),
                "p99_seconds": pick(0.99),
            }))
        elif scenario == "cart":
            handle = await client.start_workflow(
                "CartWorkflow", id=f"cart-{uuid.uuid4()}", task_queue=queue)
            await handle.signal("add", "apple")
            await handle.signal("add", "pear")
            items = await asyncio.wait_for(handle.query("items"), WAIT_SECONDS)
            await handle.signal("checkout")
            result = await asyncio.wait_for(handle.result(), WAIT_SECONDS)
            print(json.dumps({"result": {"queried": items, "returned": result}}))
        elif scenario == "query":
            handle = client.get_workflow_handle(rest[0])
            print(json.dumps({"result": await asyncio.wait_for(handle.query(rest[1]), WAIT_SECONDS)}))
        elif scenario == "signal":
            await client.get_workflow_handle(rest[0]).signal(rest[1])
            print(json.dumps({"result": None}))
        elif scenario == "events":
            history = await asyncio.wait_for(
                client.get_workflow_handle(rest[0]).fetch_history(), WAIT_SECONDS)
            print(json.dumps({"result": [EventType.Name(event.event_type) for event in history.events]}))
        elif scenario == "update":
            handle = await client.start_workflow(
                "CartWorkflow", id=f"update-{uuid.uuid4()}", task_queue=queue)
            counts = [
                await asyncio.wait_for(handle.execute_update("add", item), WAIT_SECONDS)
                for item in ("apple", "pear")
            ]
            try:
                rejected = await asyncio.wait_for(handle.execute_update("add", ""), WAIT_SECONDS)
            except WorkflowUpdateFailedError as error:
                rejected = describe(error)
            await handle.signal("checkout")
            result = await asyncio.wait_for(handle.result(), WAIT_SECONDS)
            print(json.dumps({"result": {"counts": counts, "rejected": rejected, "returned": result}}))
        elif scenario == "stack":
            handle = await client.start_workflow(
                "CartWorkflow", id=f"stack-{uuid.uuid4()}", task_queue=queue)
            trace = await asyncio.wait_for(handle.query("__stack_trace"), WAIT_SECONDS)
            await handle.signal("checkout")
            result = await asyncio.wait_for(handle.result(), WAIT_SECONDS)
            print(json.dumps({"result": {"stack_trace": trace, "returned": result}}))
        elif scenario == "cancel":
            handle = await client.start_workflow(
                "CancellableWorkflow", id=f"cancel-{uuid.uuid4()}", task_queue=queue)
            await handle.cancel()
            print(json.dumps({"result": await asyncio.wait_for(handle.result(), WAIT_SECONDS)}))
        elif scenario == "start":
            task_timeout = timedelta(seconds=float(rest[3])) if len(rest) > 3 else None
            handle = await client.start_workflow(
                rest[0], args=json.loads(rest[1]), id=rest[2], task_queue=queue,
                task_timeout=task_timeout)
            print(json.dumps({"result": handle.result_run_id}))
        elif scenario == "result":
            handle = client.get_workflow_handle(rest[0])
            print(json.dumps({"result": await asyncio.wait_for(handle.result(), WAIT_SECONDS)}))
        else:
            raise SystemExit(f"unknown scenario {scenario}")
    except (WorkflowFailureError, asyncio.TimeoutError) as error:
        print(json.dumps(describe(error)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
    sys.stdout.flush()
    # The client's native bridge can abort in the interpreter's finalisation after the
    # work is done: leave without it.
    os._exit(0)
