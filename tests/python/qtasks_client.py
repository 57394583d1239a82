"""The real Python QTasks client, driven by tests/tests/python_qtasks.rs.

Usage: qtasks_client.py APP URL CALLS_JSON

CALLS_JSON is a list of {"task", "args", "kwargs", "timeout", "priority"};
each call is `await app.add_task(task, *args, timeout=..., **kwargs)`, and
its outcome is printed as one JSON line: {"status", "returning",
"traceback", "cancel_reason", "priority"} (null when the client got None).
A call {"ping": true} prints {"ping": <app.ping()>}.
"""

import asyncio
import json
import sys

from qtasks.asyncio import QueueTasks


async def main() -> None:
    name, url, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    app = QueueTasks(name=name, broker_url=url)
    for call in calls:
        if call.get("ping"):
            print(json.dumps({"ping": bool(await app.ping())}), flush=True)
            continue
        extra = {}
        if call.get("priority") is not None:
            extra["priority"] = call["priority"]
        task = await app.add_task(
            call["task"], *call.get("args", []), timeout=call.get("timeout", 60), **extra, **call.get("kwargs", {})
        )
        if task is None:
            print(json.dumps(None), flush=True)
            continue
        print(
            json.dumps(
                {
                    "uuid": str(task.uuid),
                    "status": task.status,
                    "returning": getattr(task, "returning", None),
                    "traceback": getattr(task, "traceback", None),
                    "cancel_reason": getattr(task, "cancel_reason", None),
                }
            ),
            flush=True,
        )


asyncio.run(main())
