-- IoT telemetry: sites, devices, their readings and alerts, and a raw ingest log.
--
-- Traits the demo lacks: a RANGE-partitioned table (by month, with a DEFAULT partition), a
-- LIST-partitioned table (by severity, with a DEFAULT partition) whose identity column lives
-- on the partitioned parent, foreign keys from partitioned tables, a partition key inside a
-- composite primary key, a text natural key referenced by a uuid-keyed table, a table without
-- any key (an ingest log, with exact duplicate rows), a BRIN index, and timestamps that are
-- neither updated_at nor created_at (taken_at, received_at). (Table inheritance: ledger.sql.)

CREATE SCHEMA telemetry;

CREATE TABLE telemetry.site (
    site_code text PRIMARY KEY CHECK (site_code ~ '^[A-Z]{3}-[0-9]{2}$'),
    region text NOT NULL,
    name text NOT NULL
);

CREATE TABLE telemetry.device (
    device_id uuid PRIMARY KEY,
    site_code text NOT NULL REFERENCES telemetry.site,
    serial_no text NOT NULL UNIQUE,
    kind text NOT NULL,
    tags text[] NOT NULL DEFAULT '{}',
    config jsonb,
    installed_at timestamptz NOT NULL
);

CREATE TABLE telemetry.reading (
    device_id uuid NOT NULL REFERENCES telemetry.device ON DELETE CASCADE,
    taken_at timestamptz NOT NULL,
    metric text NOT NULL,
    value double precision,
    PRIMARY KEY (device_id, taken_at, metric)
) PARTITION BY RANGE (taken_at);
CREATE TABLE telemetry.reading_2026_09 PARTITION OF telemetry.reading
    FOR VALUES FROM ('2026-09-01 00:00+00') TO ('2026-10-01 00:00+00');
CREATE TABLE telemetry.reading_2026_10 PARTITION OF telemetry.reading
    FOR VALUES FROM ('2026-10-01 00:00+00') TO ('2026-11-01 00:00+00');
CREATE TABLE telemetry.reading_2026_11 PARTITION OF telemetry.reading
    FOR VALUES FROM ('2026-11-01 00:00+00') TO ('2026-12-01 00:00+00');
CREATE TABLE telemetry.reading_default PARTITION OF telemetry.reading DEFAULT;
CREATE INDEX reading_metric ON telemetry.reading (metric, taken_at);

CREATE TABLE telemetry.alert (
    alert_id bigint GENERATED ALWAYS AS IDENTITY,
    severity text NOT NULL,
    device_id uuid NOT NULL REFERENCES telemetry.device ON DELETE RESTRICT,
    raised_at timestamptz NOT NULL,
    message text NOT NULL,
    acknowledged boolean NOT NULL DEFAULT false,
    PRIMARY KEY (alert_id, severity)
) PARTITION BY LIST (severity);
CREATE TABLE telemetry.alert_critical PARTITION OF telemetry.alert FOR VALUES IN ('critical');
CREATE TABLE telemetry.alert_warning PARTITION OF telemetry.alert FOR VALUES IN ('warning');
CREATE TABLE telemetry.alert_other PARTITION OF telemetry.alert DEFAULT;

-- no primary key, no unique constraint: an append-only log, duplicates allowed
CREATE TABLE telemetry.raw_ingest (
    received_at timestamptz NOT NULL,
    source text NOT NULL,
    payload jsonb
);
CREATE INDEX raw_ingest_received ON telemetry.raw_ingest USING brin (received_at);

-- deterministic data ------------------------------------------------------------------------

INSERT INTO telemetry.site
    SELECT (ARRAY['KYO', 'OSA', 'NRT', 'FRA', 'GRU'])[1 + g % 5] || '-' || lpad(g::text, 2, '0'),
           (ARRAY['kansai', 'kansai', 'kanto', 'eu', 'sa'])[1 + g % 5], 'site ' || g
    FROM generate_series(1, 30) g;

INSERT INTO telemetry.device
    SELECT md5('device-' || g)::uuid,
           (ARRAY['KYO', 'OSA', 'NRT', 'FRA', 'GRU'])[1 + (1 + g % 30) % 5] || '-'
               || lpad((1 + g % 30)::text, 2, '0'),
           'SN' || lpad((g * 7919 % 100000)::text, 6, '0'),
           (ARRAY['thermo', 'hygro', 'power'])[1 + g % 3],
           CASE WHEN g % 4 = 0 THEN ARRAY['outdoor', 'v2'] ELSE ARRAY['indoor'] END,
           CASE WHEN g % 5 = 0 THEN NULL ELSE jsonb_build_object('interval_s', 60 * (1 + g % 5)) END,
           timestamptz '2026-01-01 00:00+00' + g * interval '1 day'
    FROM generate_series(1, 200) g;

INSERT INTO telemetry.reading
    SELECT md5('device-' || d)::uuid,
           timestamptz '2026-09-20 00:00+00' + h * interval '3 days 1 hour',
           m, round(((d * 31 + h * 17) % 4000) / 100.0, 2)
    FROM generate_series(1, 200) d, generate_series(0, 26) h, unnest(ARRAY['temp', 'rh']) m
    WHERE (d + h) % 3 = 0;

INSERT INTO telemetry.alert (severity, device_id, raised_at, message, acknowledged)
    SELECT (ARRAY['critical', 'warning', 'warning', 'info', 'debug'])[1 + g % 5],
           md5('device-' || (1 + g % 150))::uuid,
           timestamptz '2026-10-01 00:00+00' + g * interval '47 minutes',
           'threshold ' || g % 7 || ' exceeded', g % 3 = 0
    FROM generate_series(1, 900) g;

INSERT INTO telemetry.raw_ingest
    SELECT timestamptz '2026-11-01 00:00+00' + (g / 2) * interval '1 minute',
           (ARRAY['mqtt', 'http', 'lora'])[1 + g % 3],
           CASE WHEN g % 10 = 0 THEN NULL
                ELSE jsonb_build_object('dev', 'SN' || lpad((g * 7919 % 100000)::text, 6, '0'),
                                        'v', g % 100, 'batt', array[g % 5, g % 7]) END
    FROM generate_series(1, 1500) g;
INSERT INTO telemetry.raw_ingest   -- exact duplicates happen in a log without a key
    SELECT * FROM telemetry.raw_ingest WHERE source = 'lora' AND received_at < '2026-11-01 01:00+00';

CREATE VIEW telemetry.latest_reading AS
    SELECT DISTINCT ON (device_id, metric) device_id, metric, taken_at, value
    FROM telemetry.reading ORDER BY device_id, metric, taken_at DESC;

ANALYZE;
