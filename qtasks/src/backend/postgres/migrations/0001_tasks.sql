-- qtasks on Postgres, schema version 1.
--
-- Applied with `search_path` set to the qtasks schema (by default `qtasks`):
-- every object below is created there, and every function keeps that
-- search_path (`SET search_path FROM CURRENT`), so it finds its tables
-- whatever the caller's search_path is (a caller's transaction included).
-- Nothing here names the schema, so one migration serves every schema.
--
-- Every row belongs to an app (`app`): apps sharing a schema never see
-- each other's tasks, settings or limits.

-- The place in line of each enqueued task (FIFO within a priority).
CREATE SEQUENCE task_seq AS bigint;

-- One row per task: its record as columns (the JSON values as text, so any
-- JSON, `\u0000` included, is stored as sent), and the queue's bookkeeping.
CREATE TABLE tasks (
    app           text             NOT NULL,
    uuid          uuid             NOT NULL,
    -- The record.
    task_name     text             NOT NULL,
    queue         text             NOT NULL,
    priority      bigint           NOT NULL,
    args          text             NOT NULL,
    status        text             NOT NULL
                  CHECK (status IN ('new', 'process', 'success', 'error', 'cancel', 'retry')),
    created_at    double precision NOT NULL,
    updated_at    double precision NOT NULL,
    result        text,
    error         text,
    attempt       bigint           NOT NULL,
    extra         text,
    limit_key     text,
    unique_key    text,
    unique_window double precision,
    -- The queue: place in line, and whether it waits for `run_at`.
    seq           bigint           NOT NULL,
    delayed       boolean          NOT NULL DEFAULT false,
    run_at        timestamptz      NOT NULL,
    -- The run holding it: the fencing token (how many times it was taken),
    -- the backend that took it and until when.
    run           bigint           NOT NULL DEFAULT 0,
    holder        uuid,
    lease_until   timestamptz,
    -- A cancel requested while it ran (the first reason wins).
    cancel_reason text,
    -- The concurrency slots it holds while it runs.
    slots         text[],
    -- When a finished record is deleted (NULL: kept).
    expires_at    timestamptz,
    PRIMARY KEY (app, uuid)
);

-- What a fetch reads: the ready tasks of a queue, by priority then place.
CREATE INDEX tasks_ready ON tasks (app, queue, priority, seq) WHERE status = 'new' AND NOT delayed;
-- Delayed tasks, by the time they are due.
CREATE INDEX tasks_delayed ON tasks (app, run_at) WHERE status = 'new' AND delayed;
-- Taken tasks, by lease deadline.
CREATE INDEX tasks_leases ON tasks (app, lease_until) WHERE status = 'process';
-- Finished records, by the time they expire (retention).
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE expires_at IS NOT NULL;

-- How many runs of each task ended with each status, in a few shards per
-- counter so that finishing workers rarely wait on one row.
CREATE TABLE counts (
    app       text     NOT NULL,
    task_name text     NOT NULL,
    status    text     NOT NULL,
    shard     smallint NOT NULL,
    n         bigint   NOT NULL,
    PRIMARY KEY (app, task_name, status, shard)
);

-- Every queue an app enqueued into or paused, and whether it is paused.
CREATE TABLE queues (
    app    text    NOT NULL,
    queue  text    NOT NULL,
    paused boolean NOT NULL DEFAULT false,
    PRIMARY KEY (app, queue)
);

-- Running tasks per limited scope: `t:{task}`, `q:{queue}`, `k:{task}\x1f{key}`.
CREATE TABLE slots (
    app     text    NOT NULL,
    scope   text    NOT NULL,
    running integer NOT NULL,
    PRIMARY KEY (app, scope)
);

-- Token buckets of the rate-limited scopes: `t:{task}`, `q:{queue}`.
CREATE TABLE buckets (
    app    text             NOT NULL,
    scope  text             NOT NULL,
    tokens double precision NOT NULL,
    at     timestamptz      NOT NULL,
    PRIMARY KEY (app, scope)
);

-- Unique keys: the task holding each, and until when once it ended (NULL
-- while it is queued or running).
CREATE TABLE uniques (
    app        text        NOT NULL,
    key        text        NOT NULL,
    uuid       uuid        NOT NULL,
    held_until timestamptz,
    PRIMARY KEY (app, key)
);

-- One-time claims (`Backend::claim`).
CREATE TABLE claims (
    app   text        NOT NULL,
    key   text        NOT NULL,
    until timestamptz NOT NULL,
    PRIMARY KEY (app, key)
);

-- Shared settings (global config, the worker registry).
CREATE TABLE settings (
    app        text        NOT NULL,
    name       text        NOT NULL,
    key        text        NOT NULL,
    value      text        NOT NULL,
    expires_at timestamptz,
    PRIMARY KEY (app, name, key)
);

-- ---------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------

-- Wakes the fetchers of an app (channel `{schema}_queued`, payload the app).
CREATE FUNCTION notify_queued(p_app text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_notify(current_schema() || '_queued', p_app);
END $$;

-- Wakes the waiters of a task that ended (channel `{schema}_done`).
CREATE FUNCTION notify_done(p_uuid uuid) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_notify(current_schema() || '_done', p_uuid::text);
END $$;

-- Serialises the limit bookkeeping of one app (slots and buckets) for the
-- rest of the transaction: one lock, so no two transactions can wait on
-- each other's slot rows.
CREATE FUNCTION lock_limits(p_app text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('qtasks limits ' || current_schema() || ' ' || p_app, 0));
END $$;

-- Gives back the slots a task held (under `lock_limits`).
CREATE FUNCTION free_slots(p_app text, p_slots text[]) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF p_slots IS NULL OR cardinality(p_slots) = 0 THEN
        RETURN;
    END IF;
    PERFORM lock_limits(p_app);
    UPDATE slots s SET running = greatest(s.running - 1, 0) WHERE s.app = p_app AND s.scope = ANY (p_slots);
    PERFORM notify_queued(p_app);
END $$;

-- Counts one run of `p_name` that ended with `p_status`.
CREATE FUNCTION count_run(p_app text, p_name text, p_status text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO counts AS c (app, task_name, status, shard, n)
    VALUES (p_app, p_name, p_status, floor(random() * 8)::smallint, 1)
    ON CONFLICT (app, task_name, status, shard) DO UPDATE SET n = c.n + 1;
END $$;

-- When a record that ends now expires (NULL: kept).
CREATE FUNCTION expiry(p_retention_ms bigint) RETURNS timestamptz
LANGUAGE sql AS $$
    SELECT CASE WHEN p_retention_ms IS NULL THEN NULL
                ELSE clock_timestamp() + p_retention_ms * interval '1 millisecond' END
$$;

-- The time now, as seconds since the epoch (how records store time).
CREATE FUNCTION epoch_now() RETURNS double precision
LANGUAGE sql AS $$ SELECT extract(epoch FROM clock_timestamp())::double precision $$;

-- Ends a locked task `cancel` with `p_reason`: counted, its unique key's
-- window starts, its waiters are woken.
CREATE FUNCTION end_cancelled(p_app text, p_uuid uuid, p_reason text, p_retention_ms bigint) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r record;
BEGIN
    UPDATE tasks t
       SET status = 'cancel', error = p_reason, result = NULL, updated_at = greatest(t.updated_at, epoch_now()),
           delayed = false, holder = NULL, lease_until = NULL, slots = NULL, expires_at = expiry(p_retention_ms)
     WHERE t.app = p_app AND t.uuid = p_uuid
    RETURNING t.task_name, t.unique_key, t.unique_window INTO r;
    PERFORM count_run(p_app, r.task_name, 'cancel');
    IF r.unique_key IS NOT NULL THEN
        UPDATE uniques u SET held_until = clock_timestamp() + coalesce(r.unique_window, 0) * interval '1 second'
         WHERE u.app = p_app AND u.key = r.unique_key AND u.uuid = p_uuid;
    END IF;
    PERFORM notify_done(p_uuid);
END $$;

-- ---------------------------------------------------------------------------
-- Enqueue
-- ---------------------------------------------------------------------------

-- Stores a `new` task and queues it (delayed by `p_delay_ms` if > 0),
-- unless a task with this id exists, or a task holds its unique key: then
-- nothing is written and the existing task's id is returned. NULL: stored.
-- In the caller's transaction, the task and the wake-up of the fetchers
-- (NOTIFY) become visible at commit, and vanish on rollback.
CREATE FUNCTION enqueue_task(
    p_app text, p_uuid uuid, p_task_name text, p_queue text, p_priority bigint, p_args text,
    p_created double precision, p_updated double precision, p_attempt bigint, p_extra text,
    p_limit_key text, p_unique_key text, p_unique_window double precision, p_delay_ms bigint
) RETURNS uuid
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    existing uuid;
    inserted integer;
BEGIN
    PERFORM 1 FROM tasks t WHERE t.app = p_app AND t.uuid = p_uuid;
    IF FOUND THEN
        RETURN p_uuid;
    END IF;
    IF p_unique_key IS NOT NULL THEN
        -- The row lock makes the check and the claim one step: of
        -- enqueuers racing on one key, one claims it, the others wait for
        -- its commit and then see it held.
        INSERT INTO uniques AS u (app, key, uuid, held_until) VALUES (p_app, p_unique_key, p_uuid, NULL)
        ON CONFLICT (app, key) DO UPDATE SET uuid = excluded.uuid, held_until = NULL
            WHERE u.held_until IS NOT NULL AND u.held_until <= clock_timestamp()
        RETURNING u.uuid INTO existing;
        IF existing IS NULL THEN
            SELECT u.uuid INTO existing FROM uniques u WHERE u.app = p_app AND u.key = p_unique_key;
            RETURN existing;
        END IF;
    END IF;
    INSERT INTO tasks (app, uuid, task_name, queue, priority, args, status, created_at, updated_at, attempt,
                       extra, limit_key, unique_key, unique_window, seq, delayed, run_at)
    VALUES (p_app, p_uuid, p_task_name, p_queue, p_priority, p_args, 'new', p_created, p_updated, p_attempt,
            p_extra, p_limit_key, p_unique_key, p_unique_window, nextval('task_seq'), p_delay_ms > 0,
            clock_timestamp() + greatest(p_delay_ms, 0) * interval '1 millisecond')
    ON CONFLICT (app, uuid) DO NOTHING;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    IF inserted = 0 THEN
        -- Enqueued at the same moment under the same id.
        RETURN p_uuid;
    END IF;
    INSERT INTO queues (app, queue) VALUES (p_app, p_queue) ON CONFLICT DO NOTHING;
    PERFORM notify_queued(p_app);
    RETURN NULL;
END $$;

-- `enqueue_task` for each element of the arrays, in order; returns what
-- each returned. The caller has removed the ids and unique keys repeated
-- within the batch.
CREATE FUNCTION enqueue_tasks(
    p_app text, p_uuid uuid[], p_task_name text[], p_queue text[], p_priority bigint[], p_args text[],
    p_created double precision[], p_updated double precision[], p_attempt bigint[], p_extra text[],
    p_limit_key text[], p_unique_key text[], p_unique_window double precision[], p_delay_ms bigint[]
) RETURNS uuid[]
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    out uuid[] := ARRAY[]::uuid[];
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_uuid), 0) LOOP
        out := out || enqueue_task(p_app, p_uuid[i], p_task_name[i], p_queue[i], p_priority[i], p_args[i],
                                   p_created[i], p_updated[i], p_attempt[i], p_extra[i], p_limit_key[i],
                                   p_unique_key[i], p_unique_window[i], p_delay_ms[i]);
    END LOOP;
    RETURN out;
END $$;

-- ---------------------------------------------------------------------------
-- Fetch
-- ---------------------------------------------------------------------------

-- Tokens of a bucket holding one period's worth (`p_rate`: [count, period
-- in seconds]) at `p_now`, refilled since its last take.
CREATE FUNCTION bucket_tokens(p_app text, p_scope text, p_rate jsonb, p_now timestamptz)
RETURNS double precision
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    cap double precision := (p_rate ->> 0)::double precision;
    per_token double precision := (p_rate ->> 1)::double precision / greatest((p_rate ->> 0)::double precision, 1);
    b record;
BEGIN
    SELECT * INTO b FROM buckets WHERE app = p_app AND scope = p_scope;
    IF NOT FOUND THEN
        RETURN cap;
    END IF;
    RETURN least(cap, b.tokens + greatest(extract(epoch FROM p_now - b.at), 0) / per_token);
END $$;

-- Takes up to `p_max` tasks of app `p_app` for holder `p_holder`, from the
-- queues `p_queues` in that order (a later queue only while the earlier
-- ones have nothing to give), by priority then place within each, holding
-- `p_limits` (NULL: none; else {"tasks": {name: limit}, "queues": {name:
-- limit}} with a limit {"c": concurrency, "k": per key, "r": [count,
-- period in seconds]}). Each taken task becomes `process`, a new run,
-- leased for `p_lease_ms`.
--
-- First, due delayed tasks join their queue, and tasks whose lease expired
-- go back to their place (or end `cancel` if a cancel was requested
-- meanwhile). Rows are locked with SKIP LOCKED: concurrent fetches never
-- wait on each other's tasks, and never take the same task.
--
-- Returns kind `task` rows, in the order taken; when none was taken, one
-- `due` row whose `o_next_ms` says when something may change without a
-- notification (a delayed task due, a lease to expire, a rate token; NULL:
-- nothing is due).
CREATE FUNCTION fetch_tasks(
    p_app text, p_queues text[], p_max integer, p_lease_ms bigint, p_holder uuid, p_limits jsonb,
    p_retention_ms bigint
) RETURNS TABLE (
    o_kind text, o_uuid uuid, o_task_name text, o_queue text, o_priority bigint, o_args text,
    o_created double precision, o_updated double precision, o_attempt bigint, o_extra text,
    o_limit_key text, o_run bigint, o_next_ms bigint
)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    now_ts timestamptz := clock_timestamp();
    now_epoch double precision := extract(epoch FROM now_ts);
    v_lease timestamptz := now_ts + p_lease_ms * interval '1 millisecond';
    taken integer := 0;
    n integer;
    q text;
    r record;
    tl jsonb;
    ql jsonb;
    s text;
    scopes text[];
    rated text[];
    tokens double precision[];
    tk double precision;
    blocked boolean;
    limited boolean;
    token_due timestamptz;
    next_due timestamptz;
    has_limits boolean := coalesce(p_limits -> 'tasks' <> '{}'::jsonb OR p_limits -> 'queues' <> '{}'::jsonb, false);
BEGIN
    -- Due delayed tasks join their queue.
    UPDATE tasks t SET delayed = false
     WHERE (t.app, t.uuid) IN (
        SELECT d.app, d.uuid FROM tasks d
         WHERE d.app = p_app AND d.status = 'new' AND d.delayed AND d.run_at <= now_ts
         ORDER BY d.run_at LIMIT 1000 FOR UPDATE SKIP LOCKED);

    -- Expired leases: back at their place, or ended `cancel`.
    FOR r IN
        SELECT e.uuid, e.slots, e.cancel_reason FROM tasks e
         WHERE e.app = p_app AND e.status = 'process' AND e.lease_until < now_ts
         ORDER BY e.lease_until LIMIT 1000 FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM free_slots(p_app, r.slots);
        IF r.cancel_reason IS NOT NULL THEN
            PERFORM end_cancelled(p_app, r.uuid, r.cancel_reason, p_retention_ms);
        ELSE
            UPDATE tasks t SET status = 'new', holder = NULL, lease_until = NULL, slots = NULL,
                               updated_at = greatest(t.updated_at, now_epoch)
             WHERE t.app = p_app AND t.uuid = r.uuid;
            PERFORM notify_queued(p_app);
        END IF;
    END LOOP;

    FOREACH q IN ARRAY p_queues LOOP
        EXIT WHEN taken >= p_max;
        PERFORM 1 FROM queues pq WHERE pq.app = p_app AND pq.queue = q AND pq.paused;
        CONTINUE WHEN FOUND;
        limited := has_limits AND coalesce(p_limits -> 'tasks' <> '{}'::jsonb OR (p_limits -> 'queues') ? q, false);
        IF NOT limited THEN
            RETURN QUERY
            WITH picked AS (
                SELECT c.app, c.uuid FROM tasks c
                 WHERE c.app = p_app AND c.queue = q AND c.status = 'new' AND NOT c.delayed
                 ORDER BY c.priority, c.seq LIMIT p_max - taken FOR UPDATE SKIP LOCKED
            ), took AS (
                UPDATE tasks t SET status = 'process', run = t.run + 1, holder = p_holder, lease_until = v_lease,
                                   updated_at = greatest(t.updated_at, now_epoch)
                  FROM picked WHERE t.app = picked.app AND t.uuid = picked.uuid
                RETURNING t.*
            ), dups AS (
                -- A run after another run held the task: it may do the work twice.
                INSERT INTO counts AS c (app, task_name, status, shard, n)
                SELECT p_app, took.task_name, 'duplicates', 0, count(*) FROM took WHERE took.run > 1
                 GROUP BY took.task_name
                ON CONFLICT (app, task_name, status, shard) DO UPDATE SET n = c.n + excluded.n
            )
            SELECT 'task', took.uuid, took.task_name, took.queue, took.priority, took.args, took.created_at,
                   took.updated_at, took.attempt, took.extra, took.limit_key, took.run, NULL::bigint
              FROM took ORDER BY took.priority, took.seq;
            GET DIAGNOSTICS n = ROW_COUNT;
            taken := taken + n;
        ELSE
            PERFORM lock_limits(p_app);
            FOR r IN
                SELECT c.uuid, c.task_name, c.queue, c.limit_key FROM tasks c
                 WHERE c.app = p_app AND c.queue = q AND c.status = 'new' AND NOT c.delayed
                 ORDER BY c.priority, c.seq LIMIT (p_max - taken) + 256 FOR UPDATE SKIP LOCKED
            LOOP
                EXIT WHEN taken >= p_max;
                tl := p_limits -> 'tasks' -> r.task_name;
                ql := p_limits -> 'queues' -> r.queue;
                blocked := false;
                scopes := ARRAY[]::text[];
                rated := ARRAY[]::text[];
                tokens := ARRAY[]::double precision[];
                -- Concurrency: of the task name, of the queue, per key.
                IF tl ? 'c' THEN
                    s := 't:' || r.task_name;
                    IF coalesce((SELECT sl.running FROM slots sl WHERE sl.app = p_app AND sl.scope = s), 0)
                       >= (tl ->> 'c')::integer THEN
                        blocked := true;
                    END IF;
                    scopes := scopes || s;
                END IF;
                IF ql ? 'c' THEN
                    s := 'q:' || r.queue;
                    IF coalesce((SELECT sl.running FROM slots sl WHERE sl.app = p_app AND sl.scope = s), 0)
                       >= (ql ->> 'c')::integer THEN
                        blocked := true;
                    END IF;
                    scopes := scopes || s;
                END IF;
                IF r.limit_key IS NOT NULL AND tl ? 'k' THEN
                    s := 'k:' || r.task_name || chr(31) || r.limit_key;
                    IF coalesce((SELECT sl.running FROM slots sl WHERE sl.app = p_app AND sl.scope = s), 0)
                       >= (tl ->> 'k')::integer THEN
                        blocked := true;
                    END IF;
                    scopes := scopes || s;
                END IF;
                -- Rates: a token from each bucket.
                IF tl ? 'r' THEN
                    s := 't:' || r.task_name;
                    tk := bucket_tokens(p_app, s, tl -> 'r', now_ts);
                    IF tk < 1 THEN
                        blocked := true;
                        token_due := least(token_due, now_ts + (1 - tk) * ((tl -> 'r' ->> 1)::double precision
                                     / greatest((tl -> 'r' ->> 0)::double precision, 1)) * interval '1 second');
                    END IF;
                    rated := rated || s;
                    tokens := tokens || tk;
                END IF;
                IF ql ? 'r' THEN
                    s := 'q:' || r.queue;
                    tk := bucket_tokens(p_app, s, ql -> 'r', now_ts);
                    IF tk < 1 THEN
                        blocked := true;
                        token_due := least(token_due, now_ts + (1 - tk) * ((ql -> 'r' ->> 1)::double precision
                                     / greatest((ql -> 'r' ->> 0)::double precision, 1)) * interval '1 second');
                    END IF;
                    rated := rated || s;
                    tokens := tokens || tk;
                END IF;
                CONTINUE WHEN blocked;
                FOR i IN 1 .. cardinality(rated) LOOP
                    INSERT INTO buckets AS b (app, scope, tokens, at) VALUES (p_app, rated[i], tokens[i] - 1, now_ts)
                    ON CONFLICT (app, scope) DO UPDATE SET tokens = excluded.tokens, at = excluded.at;
                END LOOP;
                FOREACH s IN ARRAY scopes LOOP
                    INSERT INTO slots AS sl (app, scope, running) VALUES (p_app, s, 1)
                    ON CONFLICT (app, scope) DO UPDATE SET running = sl.running + 1;
                END LOOP;
                RETURN QUERY
                UPDATE tasks t SET status = 'process', run = t.run + 1, holder = p_holder, lease_until = v_lease,
                                   updated_at = greatest(t.updated_at, now_epoch),
                                   slots = CASE WHEN cardinality(scopes) > 0 THEN scopes END
                 WHERE t.app = p_app AND t.uuid = r.uuid
                RETURNING 'task'::text, t.uuid, t.task_name, t.queue, t.priority, t.args, t.created_at, t.updated_at,
                          t.attempt, t.extra, t.limit_key, t.run, NULL::bigint;
                IF (SELECT t.run FROM tasks t WHERE t.app = p_app AND t.uuid = r.uuid) > 1 THEN
                    PERFORM count_run(p_app, r.task_name, 'duplicates');
                END IF;
                taken := taken + 1;
            END LOOP;
        END IF;
    END LOOP;

    IF taken = 0 THEN
        next_due := least(
            token_due,
            (SELECT min(d.run_at) FROM tasks d WHERE d.app = p_app AND d.status = 'new' AND d.delayed),
            (SELECT min(l.lease_until) FROM tasks l WHERE l.app = p_app AND l.status = 'process'));
        RETURN QUERY SELECT 'due'::text, NULL::uuid, NULL::text, NULL::text, NULL::bigint, NULL::text,
                            NULL::double precision, NULL::double precision, NULL::bigint, NULL::text, NULL::text,
                            NULL::bigint,
                            CASE WHEN next_due IS NULL THEN NULL
                                 ELSE greatest(ceil(extract(epoch FROM next_due - clock_timestamp()) * 1000), 0)::bigint
                            END;
    END IF;
END $$;

-- ---------------------------------------------------------------------------
-- Finish, release, cancel
-- ---------------------------------------------------------------------------

-- Writes the end of a task (a final status or `retry`) for run `p_run`
-- (NULL: not fenced), releases its lease and slots, counts it, starts its
-- unique key's window and wakes its waiters: one round trip.
--
-- Returns 0 stored; 1 the task had ended already (the first end stays);
-- 2 another run holds it (nothing stored); 3 stored, though another run
-- had taken the task back, as it waited in the queue unrun (it then does
-- not run again).
CREATE FUNCTION finish_task(
    p_app text, p_uuid uuid, p_run bigint, p_status text, p_task_name text, p_queue text, p_priority bigint,
    p_args text, p_created double precision, p_updated double precision, p_result text, p_error text,
    p_attempt bigint, p_extra text, p_limit_key text, p_retention_ms bigint
) RETURNS integer
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r record;
    outcome integer := 0;
BEGIN
    SELECT t.status, t.run, t.slots, t.unique_key, t.unique_window, t.task_name INTO r
      FROM tasks t WHERE t.app = p_app AND t.uuid = p_uuid FOR UPDATE;
    IF NOT FOUND THEN
        -- Written without being enqueued here (flushed meanwhile): stored as given.
        INSERT INTO tasks (app, uuid, task_name, queue, priority, args, status, created_at, updated_at, result,
                           error, attempt, extra, limit_key, seq, run_at, expires_at)
        VALUES (p_app, p_uuid, p_task_name, p_queue, p_priority, p_args, p_status, p_created, p_updated, p_result,
                p_error, p_attempt, p_extra, p_limit_key, nextval('task_seq'), clock_timestamp(),
                expiry(p_retention_ms))
        ON CONFLICT (app, uuid) DO NOTHING;
        PERFORM count_run(p_app, p_task_name, p_status);
        PERFORM notify_done(p_uuid);
        RETURN 0;
    END IF;
    IF r.status NOT IN ('new', 'process') THEN
        RETURN 1;
    END IF;
    IF p_run IS NOT NULL AND r.run <> p_run THEN
        IF r.status = 'process' THEN
            RETURN 2;
        END IF;
        outcome := 3;
    END IF;
    PERFORM free_slots(p_app, r.slots);
    UPDATE tasks t
       SET status = p_status, args = p_args, updated_at = greatest(t.updated_at, p_updated), result = p_result,
           error = p_error, attempt = p_attempt, extra = p_extra, delayed = false, holder = NULL,
           lease_until = NULL, slots = NULL, expires_at = expiry(p_retention_ms)
     WHERE t.app = p_app AND t.uuid = p_uuid;
    PERFORM count_run(p_app, p_task_name, p_status);
    IF r.unique_key IS NOT NULL THEN
        UPDATE uniques u SET held_until = clock_timestamp() + coalesce(r.unique_window, 0) * interval '1 second'
         WHERE u.app = p_app AND u.key = r.unique_key AND u.uuid = p_uuid;
    END IF;
    PERFORM notify_done(p_uuid);
    RETURN outcome;
END $$;

-- `finish_task` for each element of the arrays, in order (the caller sorts
-- them by app and id, so concurrent batches lock rows in one order);
-- returns what each returned. One statement and one commit for every task
-- that ended while the previous batch was written.
CREATE FUNCTION finish_tasks(
    p_app text[], p_uuid uuid[], p_run bigint[], p_status text[], p_task_name text[], p_queue text[],
    p_priority bigint[], p_args text[], p_created double precision[], p_updated double precision[],
    p_result text[], p_error text[], p_attempt bigint[], p_extra text[], p_limit_key text[],
    p_retention_ms bigint[]
) RETURNS integer[]
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    out integer[] := ARRAY[]::integer[];
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_uuid), 0) LOOP
        out := out || finish_task(p_app[i], p_uuid[i], p_run[i], p_status[i], p_task_name[i], p_queue[i],
                                  p_priority[i], p_args[i], p_created[i], p_updated[i], p_result[i], p_error[i],
                                  p_attempt[i], p_extra[i], p_limit_key[i], p_retention_ms[i]);
    END LOOP;
    RETURN out;
END $$;

-- Puts a task back at its place, `new` again, if run `p_run` of holder
-- `p_holder` holds it. `p_undo`: the run never started (a fetch dropped
-- before it handed the task out), so it is taken back too and the next
-- run is not counted as a duplicate.
CREATE FUNCTION release_task(p_app text, p_uuid uuid, p_run bigint, p_holder uuid, p_undo boolean,
                             p_retention_ms bigint)
RETURNS boolean
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r record;
BEGIN
    SELECT t.slots, t.cancel_reason INTO r FROM tasks t
     WHERE t.app = p_app AND t.uuid = p_uuid AND t.status = 'process' AND t.run = p_run AND t.holder = p_holder
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM free_slots(p_app, r.slots);
    IF r.cancel_reason IS NOT NULL AND NOT p_undo THEN
        -- Its cancel was requested while it ran: it ends here, never to run again.
        PERFORM end_cancelled(p_app, p_uuid, r.cancel_reason, p_retention_ms);
        RETURN true;
    END IF;
    UPDATE tasks t
       SET status = 'new', holder = NULL, lease_until = NULL, slots = NULL,
           run = CASE WHEN p_undo THEN t.run - 1 ELSE t.run END,
           updated_at = CASE WHEN p_undo THEN t.updated_at ELSE greatest(t.updated_at, epoch_now()) END
     WHERE t.app = p_app AND t.uuid = p_uuid;
    PERFORM notify_queued(p_app);
    RETURN true;
END $$;

-- Cancels a task: a queued one ends `cancel` at once (`cancelled`); for a
-- running one the request is stored (the first reason wins) and sent on
-- channel `{schema}_cancel` as `{uuid} {reason}` (`requested`). Else the
-- status it had, or `missing`.
CREATE FUNCTION cancel_task(p_app text, p_uuid uuid, p_reason text, p_retention_ms bigint) RETURNS text
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    st text;
    reason text;
BEGIN
    SELECT t.status INTO st FROM tasks t WHERE t.app = p_app AND t.uuid = p_uuid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'missing';
    END IF;
    IF st = 'new' THEN
        PERFORM end_cancelled(p_app, p_uuid, p_reason, p_retention_ms);
        RETURN 'cancelled';
    END IF;
    IF st = 'process' THEN
        UPDATE tasks t SET cancel_reason = coalesce(t.cancel_reason, p_reason)
         WHERE t.app = p_app AND t.uuid = p_uuid RETURNING t.cancel_reason INTO reason;
        -- A reason too long for a notification is read from the row.
        PERFORM pg_notify(current_schema() || '_cancel',
                          p_uuid::text || CASE WHEN octet_length(reason) < 7000 THEN ' ' || reason ELSE '' END);
        RETURN 'requested';
    END IF;
    RETURN st;
END $$;

-- ---------------------------------------------------------------------------
-- Reading, flushing, retention
-- ---------------------------------------------------------------------------

-- Queue depth, tasks in flight and the counters of an app, as rows
-- (name, status, n): ('', 'queued', n), ('', 'in_flight', n), then one per
-- task name and status.
CREATE FUNCTION app_stats(p_app text) RETURNS TABLE (o_name text, o_status text, o_n bigint)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RETURN QUERY SELECT ''::text, 'queued'::text, count(*) FROM tasks t WHERE t.app = p_app AND t.status = 'new';
    RETURN QUERY SELECT ''::text, 'in_flight'::text, count(*) FROM tasks t WHERE t.app = p_app AND t.status = 'process';
    RETURN QUERY SELECT c.task_name, c.status, sum(c.n)::bigint FROM counts c WHERE c.app = p_app
                 GROUP BY c.task_name, c.status;
END $$;

-- What the app's queues hold: `p_queues`, or every queue it has seen.
CREATE FUNCTION queue_infos(p_app text, p_queues text[]) RETURNS TABLE (
    o_queue text, o_depth bigint, o_delayed bigint, o_in_flight bigint, o_paused boolean, o_oldest double precision
)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    now_ts timestamptz := clock_timestamp();
BEGIN
    RETURN QUERY
    WITH names AS (
        SELECT x.name FROM unnest(p_queues) AS x(name) WHERE cardinality(p_queues) > 0
        UNION
        SELECT pq.queue FROM queues pq WHERE pq.app = p_app AND coalesce(cardinality(p_queues), 0) = 0
    ), counted AS (
        SELECT t.queue,
               count(*) FILTER (WHERE t.status = 'new' AND (NOT t.delayed OR t.run_at <= now_ts)) AS depth,
               count(*) FILTER (WHERE t.status = 'new' AND t.delayed AND t.run_at > now_ts) AS delayed,
               count(*) FILTER (WHERE t.status = 'process') AS in_flight,
               min(t.created_at) FILTER (WHERE t.status = 'new' AND (NOT t.delayed OR t.run_at <= now_ts)) AS oldest
          FROM tasks t
         WHERE t.app = p_app AND t.status IN ('new', 'process') AND t.queue IN (SELECT name FROM names)
         GROUP BY t.queue
    )
    SELECT names.name, coalesce(counted.depth, 0), coalesce(counted.delayed, 0), coalesce(counted.in_flight, 0),
           coalesce((SELECT pq.paused FROM queues pq WHERE pq.app = p_app AND pq.queue = names.name), false),
           counted.oldest
      FROM names LEFT JOIN counted ON counted.queue = names.name
     ORDER BY names.name;
END $$;

-- Removes every task, counter, limit, key, claim and setting of an app.
CREATE FUNCTION flush_app(p_app text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM tasks WHERE app = p_app;
    DELETE FROM counts WHERE app = p_app;
    DELETE FROM queues WHERE app = p_app;
    DELETE FROM slots WHERE app = p_app;
    DELETE FROM buckets WHERE app = p_app;
    DELETE FROM uniques WHERE app = p_app;
    DELETE FROM claims WHERE app = p_app;
    DELETE FROM settings WHERE app = p_app;
END $$;

-- Deletes up to `p_batch` expired rows (finished records past their
-- retention, then stale keys, claims and settings); returns how many. Small
-- batches: short transactions, and a table and indexes that autovacuum
-- keeps compact.
CREATE FUNCTION purge_expired(p_batch integer) RETURNS integer
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n integer;
    total integer := 0;
BEGIN
    DELETE FROM tasks t WHERE t.ctid = ANY (ARRAY(
        SELECT e.ctid FROM tasks e WHERE e.expires_at < clock_timestamp()
         ORDER BY e.expires_at LIMIT p_batch FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    DELETE FROM uniques u WHERE u.ctid = ANY (ARRAY(
        SELECT x.ctid FROM uniques x WHERE x.held_until < clock_timestamp() LIMIT p_batch FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    DELETE FROM claims c WHERE c.ctid = ANY (ARRAY(
        SELECT x.ctid FROM claims x WHERE x.until < clock_timestamp() LIMIT p_batch FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    DELETE FROM settings s WHERE s.ctid = ANY (ARRAY(
        SELECT x.ctid FROM settings x WHERE x.expires_at < clock_timestamp() LIMIT p_batch FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN total + n;
END $$;
