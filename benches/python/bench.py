"""Producer and clock of benches/python-interop.sh.

  bench.py qtasks-fill URL APP N     enqueue N add(i, i) with the real QTasks client
  bench.py celery-fill URL QUEUE N   send N app.add(i, i) with the real Celery client
  bench.py qtasks-drain URL APP N    wait for a worker to drain them; print tasks/s
  bench.py celery-drain URL QUEUE N  the same for Celery

The drain clock starts when the queue first shrinks (a worker took the
first task) and stops when every task has its result, so worker start-up
is not counted. It then checks every result. Prints `RATE <tasks/s>`.
"""

import asyncio
import json
import sys
import time

import redis


def fill_qtasks(url, app_name, n):
    from qtasks.asyncio import QueueTasks

    app = QueueTasks(name=app_name, broker_url=url)

    async def go():
        ids = []
        for i in range(n):
            task = await app.add_task("add", i, i)
            ids.append(str(task.task_id) if hasattr(task, "task_id") else str(task.uuid))
        return ids

    ids = asyncio.run(go())
    redis.Redis.from_url(url).set(f"bench:{app_name}:ids", json.dumps(ids))


def fill_celery(url, queue, n):
    from celery import Celery

    app = Celery("app", broker=url, backend=url)
    app.conf.task_default_queue = queue
    add = app.signature("app.add")
    ids = [add.apply_async((i, i)).id for i in range(n)]
    redis.Redis.from_url(url).set(f"bench:{queue}:ids", json.dumps(ids))


def drain(url, kind, name, n):
    r = redis.Redis.from_url(url)
    ids = json.loads(r.get(f"bench:{name}:ids"))
    queue = f"{name}:task_queue" if kind == "qtasks" else name
    while r.llen(queue) >= n:
        time.sleep(0.001)
    start = time.time()
    while True:
        if kind == "qtasks":
            busy = r.llen(queue) + r.zcard(f"{name}:task_process")
        else:
            busy = r.llen(queue) + r.hlen("unacked")
        if busy == 0:
            break
        time.sleep(0.005)
    end = time.time()
    if kind == "qtasks":
        pipe = r.pipeline()
        for i in ids:
            pipe.hmget(f"{name}:{i}", "status", "returning")
        rows = pipe.execute()
        bad = [x for i, x in enumerate(rows) if x[0] != b"success" or json.loads(x[1]) != 2 * i]
    else:
        rows = r.mget([f"celery-task-meta-{i}" for i in ids])
        bad = [x for i, x in enumerate(rows) if x is None or json.loads(x)["result"] != 2 * i]
    if bad:
        sys.exit(f"{len(bad)} tasks ended badly, e.g. {bad[0]!r}")
    print(f"RATE {n / (end - start):.0f}", flush=True)


def main():
    mode, url, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if mode == "qtasks-fill":
        fill_qtasks(url, name, n)
    elif mode == "celery-fill":
        fill_celery(url, name, n)
    elif mode in ("qtasks-drain", "celery-drain"):
        drain(url, mode.split("-")[0], name, n)
    else:
        sys.exit(f"unknown mode {mode}")


main()
