-- Derived resource KPIs per UTC hour (cpu_usage_ratio, memory_used_ratio, disk_used_ratio),
-- computed from that hour's rollups by the rollup job in the same transaction, so a monthly
-- report reads one row per metric and hour instead of every node_exporter rollup. `data` holds
-- every host's value for the hour (`store/kpi.rs`); an hour without a row (older data) is
-- derived from the rollups when read.
CREATE TABLE kpi_hours (
    metric  TEXT NOT NULL,
    hour_ms BIGINT NOT NULL,
    data    BYTEA NOT NULL,
    PRIMARY KEY (metric, hour_ms)
);
CREATE INDEX kpi_hours_hour ON kpi_hours (hour_ms);
