-- qtasks on Postgres, schema version 2: batches written set-wise.
--
-- Version 1 ran `finish_task` once per task of a batch: a lock, an update,
-- a counter upsert and a notification per task, all in PL/pgSQL. Most ends
-- are the plain case: the run that holds the task ends it, and it holds no
-- concurrency slot nor unique key. Those are now written by one UPDATE for
-- the whole batch, counted with one upsert per task name and status, and
-- announced together (below); every other end (a stale run, a
-- task that holds slots or a unique key, a row that is gone) still goes
-- through `finish_task`, one by one, with the same outcomes as before.
--
-- Waiters are woken with one notification per 200 ended tasks (their ids
-- separated by commas, within the 8000-byte payload limit) rather than one
-- per task: Postgres queues notifications under one lock at commit.

CREATE OR REPLACE FUNCTION finish_tasks(
    p_app text[], p_uuid uuid[], p_run bigint[], p_status text[], p_task_name text[], p_queue text[],
    p_priority bigint[], p_args text[], p_created double precision[], p_updated double precision[],
    p_result text[], p_error text[], p_attempt bigint[], p_extra text[], p_limit_key text[],
    p_retention_ms bigint[]
) RETURNS integer[]
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n integer := coalesce(cardinality(p_uuid), 0);
    out integer[] := array_fill(0, ARRAY[n]);
    plain integer[];
    done uuid[];
    i integer;
BEGIN
    IF n = 0 THEN
        RETURN ARRAY[]::integer[];
    END IF;
    -- The plain ends, in one statement. The conditions are checked again
    -- on the row as locked (READ COMMITTED re-reads an updated row), so a
    -- row that changed meanwhile is left to the per-task path.
    WITH input AS (
        SELECT * FROM unnest(p_app, p_uuid, p_run, p_status, p_task_name, p_args, p_updated, p_result, p_error,
                             p_attempt, p_extra, p_retention_ms)
               WITH ORDINALITY AS x(app, uuid, run, status, task_name, args, updated, result, error, attempt,
                                    extra, retention_ms, ord)
    ), ended AS (
        UPDATE tasks t
           SET status = i.status, args = i.args, updated_at = greatest(t.updated_at, i.updated),
               result = i.result, error = i.error, attempt = i.attempt, extra = i.extra, delayed = false,
               holder = NULL, lease_until = NULL, expires_at = expiry(i.retention_ms)
          FROM input i
         WHERE t.app = i.app AND t.uuid = i.uuid AND t.status IN ('new', 'process')
           AND (i.run IS NULL OR t.run = i.run) AND t.slots IS NULL AND t.unique_key IS NULL
        RETURNING i.ord, t.app, t.uuid, i.task_name, i.status
    ), counted AS (
        INSERT INTO counts AS c (app, task_name, status, shard, n)
        SELECT e.app, e.task_name, e.status, floor(random() * 8)::smallint, count(*)
          FROM ended e GROUP BY e.app, e.task_name, e.status ORDER BY e.app, e.task_name, e.status
        ON CONFLICT (app, task_name, status, shard) DO UPDATE SET n = c.n + excluded.n
    )
    SELECT array_agg(e.ord::integer), array_agg(e.uuid) INTO plain, done FROM ended e;
    IF done IS NOT NULL THEN
        FOR i IN 0 .. (cardinality(done) - 1) / 200 LOOP
            PERFORM pg_notify(current_schema() || '_done', array_to_string(done[i * 200 + 1 : i * 200 + 200], ','));
        END LOOP;
    END IF;

    -- The rest, one by one, in the caller's order.
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN plain IS NOT NULL AND i = ANY (plain);
        out[i] := finish_task(p_app[i], p_uuid[i], p_run[i], p_status[i], p_task_name[i], p_queue[i],
                              p_priority[i], p_args[i], p_created[i], p_updated[i], p_result[i], p_error[i],
                              p_attempt[i], p_extra[i], p_limit_key[i], p_retention_ms[i]);
    END LOOP;
    RETURN out;
END $$;

-- Enqueueing a batch set-wise: a batch without unique keys (the common
-- case) is inserted by one statement, in the caller's order, with one
-- notification for the app. A batch with a unique key in it goes task by
-- task as before, so the keys are claimed in order.
CREATE OR REPLACE FUNCTION enqueue_tasks(
    p_app text, p_uuid uuid[], p_task_name text[], p_queue text[], p_priority bigint[], p_args text[],
    p_created double precision[], p_updated double precision[], p_attempt bigint[], p_extra text[],
    p_limit_key text[], p_unique_key text[], p_unique_window double precision[], p_delay_ms bigint[]
) RETURNS uuid[]
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n integer := coalesce(cardinality(p_uuid), 0);
    out uuid[];
    added uuid[];
BEGIN
    IF n = 0 THEN
        RETURN ARRAY[]::uuid[];
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_unique_key) AS k WHERE k IS NOT NULL) THEN
        out := array_fill(NULL::uuid, ARRAY[n]);
        FOR i IN 1 .. n LOOP
            out[i] := enqueue_task(p_app, p_uuid[i], p_task_name[i], p_queue[i], p_priority[i], p_args[i],
                                   p_created[i], p_updated[i], p_attempt[i], p_extra[i], p_limit_key[i],
                                   p_unique_key[i], p_unique_window[i], p_delay_ms[i]);
        END LOOP;
        RETURN out;
    END IF;
    WITH input AS (
        SELECT * FROM unnest(p_uuid, p_task_name, p_queue, p_priority, p_args, p_created, p_updated, p_attempt,
                             p_extra, p_limit_key, p_delay_ms)
               WITH ORDINALITY AS x(uuid, task_name, queue, priority, args, created, updated, attempt, extra,
                                    limit_key, delay_ms, ord)
    ), inserted AS (
        INSERT INTO tasks (app, uuid, task_name, queue, priority, args, status, created_at, updated_at, attempt,
                           extra, limit_key, seq, delayed, run_at)
        SELECT p_app, i.uuid, i.task_name, i.queue, i.priority, i.args, 'new', i.created, i.updated, i.attempt,
               i.extra, i.limit_key, nextval('task_seq'), i.delay_ms > 0,
               clock_timestamp() + greatest(i.delay_ms, 0) * interval '1 millisecond'
          FROM input i ORDER BY i.ord
        ON CONFLICT (app, uuid) DO NOTHING
        RETURNING uuid, queue
    ), known AS (
        INSERT INTO queues (app, queue) SELECT DISTINCT p_app, q.queue FROM inserted q ORDER BY 2
        ON CONFLICT DO NOTHING
    )
    SELECT array_agg(uuid) INTO added FROM inserted;
    IF added IS NOT NULL THEN
        PERFORM notify_queued(p_app);
    END IF;
    -- NULL for a task enqueued now; its id for one that existed already.
    SELECT array_agg(CASE WHEN added IS NOT NULL AND u = ANY (added) THEN NULL ELSE u END ORDER BY o) INTO out
      FROM unnest(p_uuid) WITH ORDINALITY AS x(u, o);
    RETURN out;
END $$;
