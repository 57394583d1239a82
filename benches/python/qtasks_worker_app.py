"""The Python QTasks 1.7.3 worker of benches/python-interop.sh: the same
`add` task as the Rust worker. Run: python qtasks_worker_app.py APP URL"""

import sys

from qtasks.asyncio import QueueTasks

app = QueueTasks(name=sys.argv[1], broker_url=sys.argv[2])


@app.task(name="add")
async def add(a, b):
    return a + b


app.run_forever()
