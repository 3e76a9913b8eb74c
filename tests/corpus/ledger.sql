-- A general ledger that predates declarative partitioning: entries are split by year with
-- table INHERITANCE, the parent holding the current year's rows itself.
--
-- Traits the demo lacks: an inheritance parent with rows of its own and two children with
-- CHECK constraints per year (a plain SELECT from the parent returns the children's rows too;
-- SELECT ... FROM ONLY returns its own), primary and foreign keys declared per child (they are
-- not inherited), a child that adds a column, a table that points at entries without a foreign
-- key (none can reference an inheritance family) and without a primary key, a text-keyed
-- chart of accounts, numeric money, and a `last_update` timestamp.

CREATE SCHEMA ledger;

CREATE TABLE ledger.account (
    code text PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('asset', 'liability', 'income', 'expense')),
    last_update timestamp NOT NULL DEFAULT localtimestamp
);

CREATE TABLE ledger.entry (
    entry_id bigint NOT NULL,
    account_code text NOT NULL,
    booked_on date NOT NULL,
    amount numeric(14, 2) NOT NULL,
    memo text
);
CREATE TABLE ledger.entry_2024 (
    CHECK (booked_on < '2025-01-01')
) INHERITS (ledger.entry);
CREATE TABLE ledger.entry_2025 (
    approved_by text,
    CHECK (booked_on >= '2025-01-01' AND booked_on < '2026-01-01')
) INHERITS (ledger.entry);

ALTER TABLE ledger.entry ADD PRIMARY KEY (entry_id),
    ADD FOREIGN KEY (account_code) REFERENCES ledger.account;
ALTER TABLE ledger.entry_2024 ADD PRIMARY KEY (entry_id),
    ADD FOREIGN KEY (account_code) REFERENCES ledger.account;
ALTER TABLE ledger.entry_2025 ADD PRIMARY KEY (entry_id),
    ADD FOREIGN KEY (account_code) REFERENCES ledger.account;
CREATE INDEX entry_booked ON ledger.entry (booked_on);
CREATE INDEX entry_2024_booked ON ledger.entry_2024 (booked_on);
CREATE INDEX entry_2025_booked ON ledger.entry_2025 (booked_on);

-- no key: attachments name their entry by id (a key cannot reference an inheritance family)
CREATE TABLE ledger.attachment (
    entry_id bigint NOT NULL,
    file_name text NOT NULL,
    bytes integer NOT NULL
);

CREATE TABLE ledger.period_close (
    period date PRIMARY KEY,
    closed_by text NOT NULL,
    closed_at timestamptz NOT NULL
);

-- deterministic data ------------------------------------------------------------------------

INSERT INTO ledger.account (code, name, kind, last_update)
    SELECT lpad((1000 + g * 10)::text, 4, '0'), 'account ' || g,
           (ARRAY['asset', 'liability', 'income', 'expense'])[1 + g % 4],
           timestamp '2024-01-01' + g * interval '1 day'
    FROM generate_series(1, 50) g;

-- accounts 41..50 were opened but never used
INSERT INTO ledger.entry_2024 (entry_id, account_code, booked_on, amount, memo)
    SELECT g, (1000 + (1 + g % 40) * 10)::text, date '2024-01-01' + (g * 7) % 366,
           round(((g * 7919) % 200000 - 100000) / 100.0, 2), 'entry ' || g
    FROM generate_series(1, 1000) g;
INSERT INTO ledger.entry_2025 (entry_id, account_code, booked_on, amount, memo, approved_by)
    SELECT 10000 + g, (1000 + (1 + g % 40) * 10)::text, date '2025-01-01' + (g * 11) % 365,
           round(((g * 6007) % 200000 - 100000) / 100.0, 2), 'entry ' || g,
           CASE WHEN g % 3 = 0 THEN 'auditor ' || g % 5 END
    FROM generate_series(1, 1000) g;
INSERT INTO ledger.entry (entry_id, account_code, booked_on, amount, memo)
    SELECT 20000 + g, (1000 + (1 + g % 40) * 10)::text, date '2026-01-01' + (g * 3) % 330,
           round(((g * 4001) % 200000 - 100000) / 100.0, 2), CASE WHEN g % 8 <> 0 THEN 'entry ' || g END
    FROM generate_series(1, 1000) g;

INSERT INTO ledger.attachment
    SELECT (ARRAY[0, 10000, 20000])[1 + g % 3] + 1 + g % 1000, 'scan-' || g || '.pdf', 1000 + g * 37
    FROM generate_series(1, 600) g;

INSERT INTO ledger.period_close
    SELECT date '2024-01-01' + (g || ' months')::interval, 'controller',
           timestamptz '2024-02-05 09:00+09' + (g || ' months')::interval
    FROM generate_series(0, 22) g;

ANALYZE;
