-- qtasks on Postgres, schema version 3: the index of the task listing.
--
-- `list_tasks` (the dashboard's task table) reads an app's records newest
-- first, a keyset page at a time: `ORDER BY created_at DESC, uuid DESC`
-- after the last row of the page before. This index gives each page in
-- the order asked, without sorting the app's rows.
CREATE INDEX tasks_listing ON tasks (app, created_at DESC, uuid DESC);
