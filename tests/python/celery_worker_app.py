"""A Python Celery app with the tasks the Rust test workers also run, for
the mixed-fleet test (tests/tests/python_celery.rs) and the benchmark.

Run: python -m celery --workdir tests/python -A celery_worker_app worker -Q QUEUE
with QTASKS_REDIS_URL set, and QTASKS_VISIBILITY_S (kombu's visibility
timeout, seconds; default 3600).
"""

import os
import time

from celery import Celery

url = os.environ.get("QTASKS_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("app", broker=url, backend=url)
app.conf.broker_transport_options = {"visibility_timeout": float(os.environ.get("QTASKS_VISIBILITY_S", "3600"))}
app.conf.worker_prefetch_multiplier = 1
app.conf.broker_connection_retry_on_startup = True
# No pidbox or events: the worker touches only its queue's keys.
app.conf.worker_enable_remote_control = False


@app.task(name="app.add")
def add(a, b):
    return a + b


@app.task(name="app.slow")
def slow(ms):
    time.sleep(ms / 1000)
    return "slow"
