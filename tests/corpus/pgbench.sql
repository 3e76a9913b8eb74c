-- pgbench's own schema, as `pgbench -i --foreign-keys` creates it (same tables, columns,
-- fillfactor, keys and constraint names), at a small made-up scale: 3 branches, 30 tellers,
-- 3,000 accounts and 2,000 history rows, as if a benchmark had run for a while.
--
-- Traits the demo lacks: a table without a primary key (pgbench_history), fixed-width char
-- filler columns, a timestamp column that is neither updated_at nor created_at (mtime),
-- foreign keys with the default ON DELETE NO ACTION (deletes of referenced rows are refused),
-- one table referenced by three others, and no serial/identity anywhere (keys are given).

CREATE TABLE pgbench_branches (
    bid integer NOT NULL,
    bbalance integer,
    filler character(88)
) WITH (fillfactor = 100);

CREATE TABLE pgbench_tellers (
    tid integer NOT NULL,
    bid integer,
    tbalance integer,
    filler character(84)
) WITH (fillfactor = 100);

CREATE TABLE pgbench_accounts (
    aid integer NOT NULL,
    bid integer,
    abalance integer,
    filler character(84)
) WITH (fillfactor = 100);

CREATE TABLE pgbench_history (
    tid integer,
    bid integer,
    aid integer,
    delta integer,
    mtime timestamp without time zone,
    filler character(22)
);

INSERT INTO pgbench_branches (bid, bbalance, filler)
    SELECT g, 0, NULL FROM generate_series(1, 3) g;
INSERT INTO pgbench_tellers (tid, bid, tbalance, filler)
    SELECT g, 1 + (g - 1) / 10, 0, NULL FROM generate_series(1, 30) g;
INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
    SELECT g, 1 + (g - 1) / 1000, 0, '' FROM generate_series(1, 3000) g;

-- a run of the TPC-B-like script: only accounts 1..1500 were ever touched
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime, filler)
    SELECT 1 + (g * 7) % 30, 1 + ((1 + (g * 7) % 30) - 1) / 10, 1 + (g * 13) % 1500,
           ((g * 37) % 10001) - 5000,
           timestamp '2026-11-20 09:00:00' + g * interval '17 seconds', NULL
    FROM generate_series(1, 2000) g;
UPDATE pgbench_accounts a SET abalance = s.total
    FROM (SELECT aid, sum(delta)::int AS total FROM pgbench_history GROUP BY aid) s
    WHERE s.aid = a.aid;
UPDATE pgbench_tellers t SET tbalance = s.total
    FROM (SELECT tid, sum(delta)::int AS total FROM pgbench_history GROUP BY tid) s
    WHERE s.tid = t.tid;
UPDATE pgbench_branches b SET bbalance = s.total
    FROM (SELECT bid, sum(delta)::int AS total FROM pgbench_history GROUP BY bid) s
    WHERE s.bid = b.bid;

ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid);
ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid);
ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid);
ALTER TABLE pgbench_tellers ADD CONSTRAINT pgbench_tellers_bid_fkey
    FOREIGN KEY (bid) REFERENCES pgbench_branches;
ALTER TABLE pgbench_accounts ADD CONSTRAINT pgbench_accounts_bid_fkey
    FOREIGN KEY (bid) REFERENCES pgbench_branches;
ALTER TABLE pgbench_history ADD CONSTRAINT pgbench_history_bid_fkey
    FOREIGN KEY (bid) REFERENCES pgbench_branches;
ALTER TABLE pgbench_history ADD CONSTRAINT pgbench_history_tid_fkey
    FOREIGN KEY (tid) REFERENCES pgbench_tellers;
ALTER TABLE pgbench_history ADD CONSTRAINT pgbench_history_aid_fkey
    FOREIGN KEY (aid) REFERENCES pgbench_accounts;
