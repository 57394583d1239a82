-- qtasks on Postgres, schema version 6: autovacuum settings of `tasks`.
--
-- Every task leaves three row versions in `tasks` (inserted `new`, updated
-- to `process`, updated to its end) and, once its retention is over, a
-- deleted row. None of the updates is HOT: each changes `status`, which
-- the partial indexes' predicates read, and `lease_until` or
-- `expires_at`, which are indexed. So each version is a new tuple with new
-- entries in every index, and only vacuum makes their space reusable.
--
-- With the server's defaults, vacuum waits until a fifth of the table is
-- dead, and then runs with a cost delay (2 ms every 200 cost units): on a
-- table that keeps a day of finished records, that is millions of dead
-- versions (and dead entries in the ready and lease indexes) before a
-- pass, and a pass that takes longer the bigger the table grows. Here
-- `tasks` is vacuumed once 1,000 rows plus 1% of it are dead (or 1,000
-- rows plus 5% were inserted since the last pass), without cost delay,
-- and analysed once 2% changed. In BENCHMARKS.md ("Table size after 1 M
-- tasks with a one-minute retention") a pass then takes 1-2 s instead of
-- 9-18 s, while the table's size is unchanged within the noise: see below.
--
-- What no table setting changes: autovacuum looks at a database at most
-- once per `autovacuum_naptime` (one minute by default), so between two
-- passes the table grows by a minute of tasks whatever the thresholds; a
-- server with more traffic may lower it. And where the server's
-- `autovacuum` is off, nothing vacuums the table but a manual VACUUM.
--
-- The other tables that change with every task (`counts`, `minutes`, the
-- floors in `queues`, the worker registry in `settings`) hold a few rows
-- updated in place (HOT: no indexed column changes), which pruning and the
-- default thresholds keep at a few pages: they keep the defaults. A lower
-- `fillfactor` on `tasks` cannot make its updates HOT, and measured worse
-- (fillfactor 50: 360 MiB at the end of the benchmark at 3,500 tasks/s,
-- against 298 MiB at 3,200 tasks/s without).
--
-- Like every migration this names no schema: it runs with the qtasks
-- schema as `search_path`, so it sets the `tasks` table of that schema.
ALTER TABLE tasks SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0.02
);
