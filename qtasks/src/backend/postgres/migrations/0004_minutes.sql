-- qtasks on Postgres, schema version 4: the runs that ended per minute.
--
-- `minute_counts` (the dashboard's throughput chart) reads how many runs
-- of an app ended in each minute of the last hour, with each status,
-- counted in the database so that every worker counts. Rather than in
-- each function that ends a task, they are counted by a trigger on
-- `counts`, which every end bumps (per task name, status and shard): each
-- time a counter grows, its growth is added to the row of the current
-- minute with the same app, name, status and shard. A transaction that
-- locks a `counts` row thus locks the one `minutes` row that goes with it,
-- right after it: no new lock order, so no new wait nor deadlock between
-- finishing workers.
--
-- Rows older than two hours are deleted by the backend's retention task
-- (`purge_minutes` in sql.rs), and with the app's other rows by `flush`.
CREATE TABLE minutes (
    app       text     NOT NULL,
    -- Minutes since the Unix epoch, by the server's clock.
    minute    bigint   NOT NULL,
    task_name text     NOT NULL,
    status    text     NOT NULL,
    shard     smallint NOT NULL,
    n         bigint   NOT NULL,
    PRIMARY KEY (app, minute, task_name, status, shard)
);
-- The retention's delete, across apps.
CREATE INDEX minutes_age ON minutes (minute);

-- Adds the growth of a `counts` row to its row of the current minute.
CREATE FUNCTION count_minute() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    grown bigint := NEW.n - CASE WHEN TG_OP = 'UPDATE' THEN OLD.n ELSE 0 END;
BEGIN
    IF grown > 0 THEN
        INSERT INTO minutes AS m (app, minute, task_name, status, shard, n)
        VALUES (NEW.app, floor(extract(epoch FROM clock_timestamp()) / 60)::bigint, NEW.task_name, NEW.status,
                NEW.shard, grown)
        ON CONFLICT (app, minute, task_name, status, shard) DO UPDATE SET n = m.n + excluded.n;
    END IF;
    RETURN NULL;
END $$;

-- Only the ends (`duplicates` counts runs that started, not ended).
CREATE TRIGGER counts_per_minute AFTER INSERT OR UPDATE ON counts
    FOR EACH ROW WHEN (NEW.status IN ('success', 'error', 'retry', 'cancel'))
    EXECUTE FUNCTION count_minute();
