"""The real Celery client, driven by tests/tests/python_celery.rs.

Usage: celery_client.py URL DEFAULT_QUEUE CALLS_JSON

The app sends to DEFAULT_QUEUE by default (`task_default_queue`), so each
test has queues of its own. CALLS_JSON is a list of calls:
{"task", "args", "kwargs", "queue", "countdown", "expires", "priority",
"serializer", "time_limit", "soft_time_limit", "timeout"}; each is sent with `apply_async` (`delay` when
it names nothing but args), all are sent first, then each is waited for
with `.get(timeout=...)`. One JSON line per call: {"id", "sent_at",
"state", "result"} or {"id", "sent_at", "state", "error": {"type",
"module", "message"}, "traceback"}. A call with "no_wait": true prints
only {"id", "sent_at"}. A call {"get": ID} waits for the result of the
task ID sent before.
"""

import json
import sys
import time

from celery import Celery

url, default_queue, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
app = Celery("app", broker=url, backend=url)
app.conf.task_default_queue = default_queue
app.conf.broker_connection_retry_on_startup = True

sent = []
for call in calls:
    if "get" in call:
        # An id sent earlier: wait for its result.
        sent.append((call, app.AsyncResult(call["get"]), time.time()))
        continue
    task = app.signature(call["task"])
    options = {
        k: call[k]
        for k in ("queue", "countdown", "expires", "priority", "serializer", "time_limit", "soft_time_limit")
        if k in call
    }
    sent_at = time.time()
    if options or call.get("kwargs"):
        result = task.apply_async(tuple(call.get("args", [])), call.get("kwargs", {}), **options)
    else:
        result = task.delay(*call.get("args", []))
    sent.append((call, result, sent_at))

for call, result, sent_at in sent:
    out = {"id": result.id, "sent_at": sent_at}
    if call.get("no_wait"):
        print(json.dumps(out), flush=True)
        continue
    try:
        out["result"] = result.get(timeout=call.get("timeout", 60))
    except Exception as e:  # noqa: BLE001 - reported to the test
        out["error"] = {"type": type(e).__name__, "module": type(e).__module__, "message": str(e)}
        out["traceback"] = result.traceback
    out["state"] = result.state
    print(json.dumps(out), flush=True)
