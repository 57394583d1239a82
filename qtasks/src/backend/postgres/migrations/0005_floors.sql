-- qtasks on Postgres, schema version 5: fetches that start where the
-- queue's ready tasks start.
--
-- A task taken from a queue leaves its entry in `tasks_ready` (and, once
-- it ends, one in `tasks_leases`) until vacuum removes them. Every fetch
-- of versions 1 to 4 scanned `tasks_ready` from the start of the queue and
-- swept `tasks_leases` for expired leases, so it stepped over every task
-- taken or ended since the last vacuum: with a backlog of a million tasks
-- a fetch read 6,000 index pages by the end of the drain, and the rate
-- fell by two thirds. Vacuum cannot keep up with a table this busy.
--
-- Now each queue keeps a floor: a place in line (priority, seq) before
-- which it holds no ready task, and a fetch scans from there.
--
-- - A fetch that took tasks proposes the last one it took as the next
--   floor (`next_*`), and a proposal becomes the floor once it is a
--   second old. The lag leaves room for enqueueing transactions that drew
--   their place in line before the last task taken, but commit after it.
-- - Whatever puts a task back in line before the floor lowers it at once
--   (`lower_floors`): an enqueue with a more urgent priority, a delayed
--   task coming due, a released task, an expired lease.
-- - A task whose enqueueing transaction commits more than a second after
--   it drew its place can still be behind the floor. So a fetch that
--   found nothing from the floor looks again from the start of each queue,
--   and the worker asks for such a full fetch at intervals
--   (`p_full`). Expired leases and due delayed tasks are found the same
--   way: a fetch looks at those that expired or came due since the
--   worker's previous fetch (and a second before it), a full fetch at all.
--
-- The floor is a hint for where to look, never the place of a task: a
-- fetch locks and takes tasks as before (FOR UPDATE SKIP LOCKED), and a
-- floor set wrongly delays a task at most until the next full fetch.

ALTER TABLE queues
    ADD COLUMN floor_priority bigint,
    ADD COLUMN floor_seq      bigint,
    ADD COLUMN next_priority  bigint,
    ADD COLUMN next_seq       bigint,
    ADD COLUMN next_at        timestamptz;

-- Lowers the floor of each queue in `p_queue` to the most urgent place
-- given for it (the arrays go together), where the floor or the proposed
-- next floor is past it; drops the proposal. Locks the queue rows in the
-- order of their names, so no two callers wait on each other.
CREATE FUNCTION lower_floors(p_app text, p_queue text[], p_priority bigint[], p_seq bigint[]) RETURNS void
LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH lowest AS (
        SELECT DISTINCT ON (x.queue) x.queue, x.priority, x.seq
          FROM unnest(p_queue, p_priority, p_seq) AS x(queue, priority, seq)
         ORDER BY x.queue, x.priority, x.seq
    ), locked AS (
        SELECT pq.queue, l.priority, l.seq FROM queues pq JOIN lowest l ON l.queue = pq.queue
         WHERE pq.app = p_app
           AND ((pq.floor_priority, pq.floor_seq) > (l.priority, l.seq)
                OR (pq.next_priority, pq.next_seq) > (l.priority, l.seq))
         ORDER BY pq.queue
           FOR UPDATE OF pq
    )
    UPDATE queues pq
       SET floor_priority = CASE WHEN (pq.floor_priority, pq.floor_seq) > (l.priority, l.seq)
                                 THEN l.priority ELSE pq.floor_priority END,
           floor_seq = CASE WHEN (pq.floor_priority, pq.floor_seq) > (l.priority, l.seq)
                            THEN l.seq ELSE pq.floor_seq END,
           next_priority = NULL, next_seq = NULL, next_at = NULL
      FROM locked l
     WHERE pq.app = p_app AND pq.queue = l.queue
$$;

-- Whether scope `p_scope` of app `p_app` runs `p_limit` tasks or more.
CREATE FUNCTION slot_full(p_app text, p_scope text, p_limit integer) RETURNS boolean
LANGUAGE sql SET search_path FROM CURRENT AS $$
    SELECT coalesce((SELECT sl.running FROM slots sl WHERE sl.app = p_app AND sl.scope = p_scope), 0) >= p_limit
$$;

-- As in version 1, and a task that joins its queue lowers the floor.
CREATE OR REPLACE FUNCTION enqueue_task(
    p_app text, p_uuid uuid, p_task_name text, p_queue text, p_priority bigint, p_args text,
    p_created double precision, p_updated double precision, p_attempt bigint, p_extra text,
    p_limit_key text, p_unique_key text, p_unique_window double precision, p_delay_ms bigint
) RETURNS uuid
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    existing uuid;
    v_seq bigint;
BEGIN
    PERFORM 1 FROM tasks t WHERE t.app = p_app AND t.uuid = p_uuid;
    IF FOUND THEN
        RETURN p_uuid;
    END IF;
    IF p_unique_key IS NOT NULL THEN
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
    ON CONFLICT (app, uuid) DO NOTHING
    RETURNING seq INTO v_seq;
    IF v_seq IS NULL THEN
        -- Enqueued at the same moment under the same id.
        RETURN p_uuid;
    END IF;
    INSERT INTO queues (app, queue) VALUES (p_app, p_queue) ON CONFLICT DO NOTHING;
    IF NOT p_delay_ms > 0 THEN
        PERFORM lower_floors(p_app, ARRAY[p_queue], ARRAY[p_priority], ARRAY[v_seq]);
    END IF;
    PERFORM notify_queued(p_app);
    RETURN NULL;
END $$;

-- As in version 2, and the tasks that join their queue lower its floor.
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
    ready_queue text[];
    ready_priority bigint[];
    ready_seq bigint[];
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
        RETURNING uuid, queue, priority, seq, delayed
    ), known AS (
        INSERT INTO queues (app, queue) SELECT DISTINCT p_app, q.queue FROM inserted q ORDER BY 2
        ON CONFLICT DO NOTHING
    )
    SELECT array_agg(i.uuid),
           array_agg(i.queue) FILTER (WHERE NOT i.delayed),
           array_agg(i.priority) FILTER (WHERE NOT i.delayed),
           array_agg(i.seq) FILTER (WHERE NOT i.delayed)
      INTO added, ready_queue, ready_priority, ready_seq
      FROM inserted i;
    IF ready_queue IS NOT NULL THEN
        PERFORM lower_floors(p_app, ready_queue, ready_priority, ready_seq);
    END IF;
    IF added IS NOT NULL THEN
        PERFORM notify_queued(p_app);
    END IF;
    -- NULL for a task enqueued now; its id for one that existed already.
    SELECT array_agg(CASE WHEN added IS NOT NULL AND u = ANY (added) THEN NULL ELSE u END ORDER BY o) INTO out
      FROM unnest(p_uuid) WITH ORDINALITY AS x(u, o);
    RETURN out;
END $$;

-- As in version 1, and a task put back in line lowers its queue's floor.
CREATE OR REPLACE FUNCTION release_task(p_app text, p_uuid uuid, p_run bigint, p_holder uuid, p_undo boolean,
                                        p_retention_ms bigint)
RETURNS boolean
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r record;
    back record;
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
     WHERE t.app = p_app AND t.uuid = p_uuid
    RETURNING t.queue, t.priority, t.seq INTO back;
    PERFORM lower_floors(p_app, ARRAY[back.queue], ARRAY[back.priority], ARRAY[back.seq]);
    PERFORM notify_queued(p_app);
    RETURN true;
END $$;

-- Version 1's `fetch_tasks`, with `p_full` and `p_sweep_ms`. Not full:
-- each queue is scanned from its floor, and only the leases that expired
-- and the delayed tasks that came due in the last `p_sweep_ms` are looked
-- at (NULL: all). Full (`p_full`, or when the first pass took nothing):
-- every expired lease and due task, and each queue from its start. Either
-- way each queue's floor moves up behind the tasks taken.
DROP FUNCTION fetch_tasks(text, text[], integer, bigint, uuid, jsonb, bigint);

CREATE FUNCTION fetch_tasks(
    p_app text, p_queues text[], p_max integer, p_lease_ms bigint, p_holder uuid, p_limits jsonb,
    p_retention_ms bigint, p_full boolean, p_sweep_ms bigint
) RETURNS TABLE (
    o_kind text, o_uuid uuid, o_task_name text, o_queue text, o_priority bigint, o_args text,
    o_created double precision, o_updated double precision, o_attempt bigint, o_extra text,
    o_limit_key text, o_run bigint, o_next_ms bigint
)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    -- How old a proposed floor must be before fetches start from it.
    floor_lag constant interval := interval '1 second';
    lowest constant bigint := -9223372036854775808;
    now_ts timestamptz := clock_timestamp();
    now_epoch double precision := extract(epoch FROM now_ts);
    v_lease timestamptz := now_ts + p_lease_ms * interval '1 millisecond';
    v_full boolean := p_full;
    sweep_from timestamptz;
    taken integer := 0;
    queue_taken integer;
    q text;
    r record;
    qr record;
    tl jsonb;
    ql jsonb;
    s text;
    scopes text[];
    rated text[];
    tokens double precision[];
    tk double precision;
    rate jsonb;
    blocked boolean;
    limited boolean;
    token_due timestamptz;
    next_due timestamptz;
    from_priority bigint;
    from_seq bigint;
    cand_priority bigint;
    cand_seq bigint;
    waiting_priority bigint;
    waiting_seq bigint;
    has_row boolean;
    back_queue text[];
    back_priority bigint[];
    back_seq bigint[];
    has_limits boolean := coalesce(p_limits -> 'tasks' <> '{}'::jsonb OR p_limits -> 'queues' <> '{}'::jsonb, false);
BEGIN
    IF has_limits THEN
        -- Taken before any queue row: the order every transaction takes them in.
        PERFORM lock_limits(p_app);
    END IF;

    LOOP
        -- Expired leases: back at their place, or ended `cancel`. Those that
        -- expired in the last `p_sweep_ms` (the worker's time since its
        -- previous fetch, and a second), or all of them in a full pass.
        sweep_from := CASE WHEN v_full OR p_sweep_ms IS NULL THEN '-infinity'::timestamptz
                           ELSE now_ts - p_sweep_ms * interval '1 millisecond' END;
        back_queue := ARRAY[]::text[];
        back_priority := ARRAY[]::bigint[];
        back_seq := ARRAY[]::bigint[];
        FOR r IN
            SELECT e.uuid, e.slots, e.cancel_reason FROM tasks e
             WHERE e.app = p_app AND e.status = 'process' AND e.lease_until >= sweep_from
               AND e.lease_until < now_ts
             ORDER BY e.lease_until LIMIT 1000 FOR UPDATE SKIP LOCKED
        LOOP
            PERFORM free_slots(p_app, r.slots);
            IF r.cancel_reason IS NOT NULL THEN
                PERFORM end_cancelled(p_app, r.uuid, r.cancel_reason, p_retention_ms);
            ELSE
                UPDATE tasks t SET status = 'new', holder = NULL, lease_until = NULL, slots = NULL,
                                   updated_at = greatest(t.updated_at, now_epoch)
                 WHERE t.app = p_app AND t.uuid = r.uuid
                RETURNING t.queue, t.priority, t.seq INTO qr;
                back_queue := back_queue || qr.queue;
                back_priority := back_priority || qr.priority;
                back_seq := back_seq || qr.seq;
            END IF;
        END LOOP;
        IF cardinality(back_queue) > 0 THEN
            PERFORM lower_floors(p_app, back_queue, back_priority, back_seq);
            PERFORM notify_queued(p_app);
        END IF;
        -- Due delayed tasks join their queue: those due since `sweep_from`,
        -- as for leases (and after them: a transaction that frees slots
        -- locks the limits before any queue row).
        WITH promoted AS (
            UPDATE tasks t SET delayed = false
             WHERE (t.app, t.uuid) IN (
                SELECT d.app, d.uuid FROM tasks d
                 WHERE d.app = p_app AND d.status = 'new' AND d.delayed AND d.run_at >= sweep_from
                   AND d.run_at <= now_ts
                 ORDER BY d.run_at LIMIT 1000 FOR UPDATE SKIP LOCKED)
            RETURNING t.queue, t.priority, t.seq
        )
        SELECT array_agg(p.queue), array_agg(p.priority), array_agg(p.seq) INTO back_queue, back_priority, back_seq
          FROM promoted p;
        IF back_queue IS NOT NULL THEN
            PERFORM lower_floors(p_app, back_queue, back_priority, back_seq);
        END IF;

        FOREACH q IN ARRAY p_queues LOOP
            EXIT WHEN taken >= p_max;
            SELECT pq.paused, pq.floor_priority, pq.floor_seq, pq.next_priority, pq.next_seq, pq.next_at INTO qr
              FROM queues pq WHERE pq.app = p_app AND pq.queue = q;
            has_row := FOUND;
            CONTINUE WHEN has_row AND qr.paused;
            IF v_full OR qr.floor_priority IS NULL THEN
                from_priority := lowest;
                from_seq := lowest;
            ELSE
                from_priority := qr.floor_priority;
                from_seq := qr.floor_seq;
            END IF;
            cand_priority := NULL;
            cand_seq := NULL;
            waiting_priority := NULL;
            waiting_seq := NULL;
            queue_taken := 0;
            limited := has_limits AND coalesce(p_limits -> 'tasks' <> '{}'::jsonb OR (p_limits -> 'queues') ? q, false);
            IF NOT limited THEN
                RETURN QUERY
                WITH picked AS (
                    SELECT c.app, c.uuid FROM tasks c
                     WHERE c.app = p_app AND c.queue = q AND c.status = 'new' AND NOT c.delayed
                       AND (c.priority, c.seq) >= (from_priority, from_seq)
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
                GET DIAGNOSTICS queue_taken = ROW_COUNT;
                IF queue_taken > 0 THEN
                    -- The last task taken here: the tasks of this fetch are
                    -- the ones leased until exactly `v_lease`.
                    SELECT t.priority, t.seq INTO cand_priority, cand_seq FROM tasks t
                     WHERE t.app = p_app AND t.status = 'process' AND t.lease_until = v_lease AND t.queue = q
                       AND t.holder = p_holder
                     ORDER BY t.priority DESC, t.seq DESC LIMIT 1;
                END IF;
            ELSE
                FOR r IN
                    SELECT c.uuid, c.task_name, c.queue, c.limit_key, c.priority, c.seq FROM tasks c
                     WHERE c.app = p_app AND c.queue = q AND c.status = 'new' AND NOT c.delayed
                       AND (c.priority, c.seq) >= (from_priority, from_seq)
                     ORDER BY c.priority, c.seq LIMIT (p_max - taken) + 256 FOR UPDATE SKIP LOCKED
                LOOP
                    EXIT WHEN taken + queue_taken >= p_max;
                    tl := p_limits -> 'tasks' -> r.task_name;
                    ql := p_limits -> 'queues' -> r.queue;
                    blocked := false;
                    scopes := ARRAY[]::text[];
                    rated := ARRAY[]::text[];
                    tokens := ARRAY[]::double precision[];
                    -- Concurrency: of the task name, of the queue, per key.
                    IF tl ? 'c' THEN
                        s := 't:' || r.task_name;
                        blocked := blocked OR slot_full(p_app, s, (tl ->> 'c')::integer);
                        scopes := scopes || s;
                    END IF;
                    IF ql ? 'c' THEN
                        s := 'q:' || r.queue;
                        blocked := blocked OR slot_full(p_app, s, (ql ->> 'c')::integer);
                        scopes := scopes || s;
                    END IF;
                    IF r.limit_key IS NOT NULL AND tl ? 'k' THEN
                        s := 'k:' || r.task_name || chr(31) || r.limit_key;
                        blocked := blocked OR slot_full(p_app, s, (tl ->> 'k')::integer);
                        scopes := scopes || s;
                    END IF;
                    -- Rates: a token from each bucket, of the task name then of the queue.
                    FOR i IN 1 .. 2 LOOP
                        rate := CASE i WHEN 1 THEN tl -> 'r' ELSE ql -> 'r' END;
                        CONTINUE WHEN rate IS NULL;
                        s := CASE i WHEN 1 THEN 't:' || r.task_name ELSE 'q:' || r.queue END;
                        tk := bucket_tokens(p_app, s, rate, now_ts);
                        IF tk < 1 THEN
                            blocked := true;
                            token_due := least(token_due, now_ts + (1 - tk) * ((rate ->> 1)::double precision
                                         / greatest((rate ->> 0)::double precision, 1)) * interval '1 second');
                        END IF;
                        rated := rated || s;
                        tokens := tokens || tk;
                    END LOOP;
                    IF blocked THEN
                        -- The floor stays at or before a task left waiting.
                        IF waiting_priority IS NULL THEN
                            waiting_priority := r.priority;
                            waiting_seq := r.seq;
                        END IF;
                        CONTINUE;
                    END IF;
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
                    queue_taken := queue_taken + 1;
                    cand_priority := r.priority;
                    cand_seq := r.seq;
                END LOOP;
                IF waiting_priority IS NOT NULL THEN
                    cand_priority := waiting_priority;
                    cand_seq := waiting_seq;
                END IF;
            END IF;
            taken := taken + queue_taken;
            -- Propose the new floor; the proposal a second old becomes the
            -- floor. Only if no one changed the floor since it was read
            -- (an enqueue lowering it), and never waiting for the row.
            IF has_row AND cand_priority IS NOT NULL AND (qr.next_at IS NULL OR qr.next_at <= now_ts - floor_lag) THEN
                UPDATE queues pq
                   SET floor_priority = CASE WHEN pq.next_at IS NULL THEN pq.floor_priority ELSE pq.next_priority END,
                       floor_seq = CASE WHEN pq.next_at IS NULL THEN pq.floor_seq ELSE pq.next_seq END,
                       next_priority = cand_priority, next_seq = cand_seq, next_at = now_ts
                 WHERE pq.app = p_app AND pq.queue = q
                   AND pq.floor_priority IS NOT DISTINCT FROM qr.floor_priority
                   AND pq.floor_seq IS NOT DISTINCT FROM qr.floor_seq
                   AND pq.next_priority IS NOT DISTINCT FROM qr.next_priority
                   AND pq.next_seq IS NOT DISTINCT FROM qr.next_seq
                   AND pq.next_at IS NOT DISTINCT FROM qr.next_at
                   AND pq.ctid = ANY (ARRAY(SELECT l.ctid FROM queues l WHERE l.app = p_app AND l.queue = q
                                              FOR UPDATE SKIP LOCKED));
            END IF;
        END LOOP;

        EXIT WHEN taken > 0 OR v_full;
        -- Nothing from the floors: from the start, once.
        v_full := true;
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
