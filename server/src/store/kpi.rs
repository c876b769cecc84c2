//! Derived resource KPIs per host and UTC hour: `cpu_usage_ratio`, `memory_used_ratio` and
//! `disk_used_ratio` (the fullest filesystem), computed from the node_exporter rollups.
//!
//! The rollup job derives them from each hour's rollups and stores them in `kpi_hours`, in the
//! transaction that replaces that hour's rollups (or, for an hour whose stored rollups late
//! samples were merged into, from those rollups at the next pass; see [`super::rollup`]): one
//! row per metric and hour holding every
//! host's value (layout below), so a monthly report reads about 700 rows per metric instead of
//! several rollups per host and hour. [`derive()`] is the one definition, used by the rollup job,
//! the demo seeder and the read-time fallback for hours without a row (data rolled up before
//! the table existed), so both give the same numbers bit for bit.
//!
//! Layout of `data`: varint count, then per host (ascending agent id) varint length, the agent
//! id's UTF-8 bytes and the value as 8 little-endian bytes. Decoding never panics on corrupt
//! input; a corrupt row is treated as missing and derived from the rollups again.

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;

use super::{
    Rollup, SeriesRow, Store,
    blob::{get_varint, put_varint},
};

/// KPI metrics derived from node_exporter series.
pub const DERIVED_METRICS: [&str; 3] = ["cpu_usage_ratio", "memory_used_ratio", "disk_used_ratio"];

const CPU: &str = "node_cpu_seconds_total";
const MEM_AVAIL: &str = "node_memory_MemAvailable_bytes";
const MEM_TOTAL: &str = "node_memory_MemTotal_bytes";
const FS_AVAIL: &str = "node_filesystem_avail_bytes";
const FS_SIZE: &str = "node_filesystem_size_bytes";

/// Every series name the derived metrics read.
pub const SOURCE_SERIES: [&str; 5] = [CPU, MEM_AVAIL, MEM_TOTAL, FS_AVAIL, FS_SIZE];

/// Whether `metric` is one of [`DERIVED_METRICS`].
pub fn is_derived(metric: &str) -> bool {
    DERIVED_METRICS.contains(&metric)
}

/// The series names `metric` is computed from: the node_exporter sources of a derived metric,
/// or the metric itself.
pub fn sources(metric: &str) -> Vec<&str> {
    match metric {
        "cpu_usage_ratio" => vec![CPU],
        "memory_used_ratio" => vec![MEM_AVAIL, MEM_TOTAL],
        "disk_used_ratio" => vec![FS_AVAIL, FS_SIZE],
        other => vec![other],
    }
}

/// Per (agent id, hour) values of `metric` from rollups sorted by (series id, hour), as the
/// contracts evidence defines them: CPU is one minus the idle share of the counters' growth
/// within the hour; memory one minus available / total of the hourly means; disk the largest
/// used share over mountpoints of the hourly means; any other metric the largest hourly mean
/// over a host's series of that name. Rollups of series not in `series` (or of other names)
/// are ignored.
pub fn derive(
    metric: &str,
    series: &HashMap<i64, SeriesRow>,
    rollups: &[Rollup],
) -> BTreeMap<(String, i64), f64> {
    let mut values: BTreeMap<(String, i64), f64> = BTreeMap::new();
    match metric {
        "cpu_usage_ratio" => {
            let mut idle: BTreeMap<(String, i64), (f64, f64)> = BTreeMap::new();
            for r in rollups {
                let Some(s) = series.get(&r.series_id).filter(|s| s.name == CPU) else {
                    continue;
                };
                // A counter's growth within the hour (a reset makes it an underestimate).
                let delta = (r.max - r.min).max(0.0);
                let e = idle.entry((s.agent_id.clone(), r.hour_ms)).or_default();
                if s.labels.get("mode").map(String::as_str) == Some("idle") {
                    e.0 += delta;
                }
                e.1 += delta;
            }
            for (k, (i, total)) in idle {
                if total > 0.0 {
                    values.insert(k, 1.0 - i / total);
                }
            }
        }
        "memory_used_ratio" => {
            let avail = means(MEM_AVAIL, series, rollups);
            let total = means(MEM_TOTAL, series, rollups);
            for ((host, hour, _), t) in &total {
                if let Some(a) = avail.get(&(host.clone(), *hour, String::new()))
                    && *t > 0.0
                {
                    values.insert((host.clone(), *hour), 1.0 - a / t);
                }
            }
        }
        "disk_used_ratio" => {
            let avail = means(FS_AVAIL, series, rollups);
            let size = means(FS_SIZE, series, rollups);
            for ((host, hour, mount), s) in &size {
                if let Some(a) = avail.get(&(host.clone(), *hour, mount.clone()))
                    && *s > 0.0
                {
                    let used = 1.0 - a / s;
                    let e = values.entry((host.clone(), *hour)).or_insert(used);
                    *e = e.max(used);
                }
            }
        }
        other => {
            for ((host, hour, _), v) in means(other, series, rollups) {
                let e = values.entry((host, hour)).or_insert(v);
                *e = e.max(v);
            }
        }
    }
    values
}

/// Hourly means of the series named `name` per (host, hour, mountpoint or ""), the largest
/// where several series share a key.
fn means(
    name: &str,
    series: &HashMap<i64, SeriesRow>,
    rollups: &[Rollup],
) -> BTreeMap<(String, i64, String), f64> {
    let mut out = BTreeMap::new();
    for r in rollups {
        let Some(s) = series.get(&r.series_id).filter(|s| s.name == name) else {
            continue;
        };
        if r.count > 0 {
            let key = (
                s.agent_id.clone(),
                r.hour_ms,
                s.labels.get("mountpoint").cloned().unwrap_or_default(),
            );
            let v = r.sum / r.count as f64;
            let e = out.entry(key).or_insert(v);
            *e = f64::max(*e, v);
        }
    }
    out
}

/// One derived metric's values for one hour, per agent id (ascending).
#[derive(Debug, Clone, PartialEq)]
pub struct KpiHour {
    pub metric: &'static str,
    pub hour_ms: i64,
    pub values: Vec<(String, f64)>,
}

/// Every derived metric for one hour from that hour's rollups (sorted by series id), including
/// metrics no host has a value for (an empty row still says "derived, nothing there").
pub fn derive_hour(
    series: &HashMap<i64, SeriesRow>,
    hour_ms: i64,
    rollups: &[Rollup],
) -> Vec<KpiHour> {
    DERIVED_METRICS
        .iter()
        .map(|&metric| KpiHour {
            metric,
            hour_ms,
            values: derive(metric, series, rollups)
                .into_iter()
                .filter(|((_, h), _)| *h == hour_ms)
                .map(|((host, _), v)| (host, v))
                .collect(),
        })
        .collect()
}

/// Encodes one hour's values.
pub fn encode(values: &[(String, f64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + values.iter().map(|(h, _)| h.len() + 10).sum::<usize>());
    put_varint(&mut out, values.len() as u64);
    for (host, v) in values {
        put_varint(&mut out, host.len() as u64);
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Decodes one hour's values, calling `f(agent id, value)` for each after checking the whole
/// row; `None` (and no call) if the data is corrupt.
pub fn decode(data: &[u8], mut f: impl FnMut(&str, f64)) -> Option<()> {
    let mut entries: Vec<(&str, f64)> = Vec::new();
    let mut pos = 0;
    let n = get_varint(data, &mut pos)?;
    for _ in 0..n {
        let len = usize::try_from(get_varint(data, &mut pos)?).ok()?;
        let end = pos.checked_add(len)?;
        let host = std::str::from_utf8(data.get(pos..end)?).ok()?;
        let bytes: [u8; 8] = data.get(end..end + 8)?.try_into().ok()?;
        pos = end + 8;
        entries.push((host, f64::from_le_bytes(bytes)));
    }
    if pos != data.len() {
        return None;
    }
    for (host, v) in entries {
        f(host, v);
    }
    Some(())
}

impl Store {
    /// Series whose names a derived metric reads, by id.
    pub async fn kpi_source_series(&self) -> sqlx::Result<HashMap<i64, SeriesRow>> {
        let mut out = HashMap::new();
        for name in SOURCE_SERIES {
            out.extend(
                self.series_named(name)
                    .await?
                    .into_iter()
                    .map(|s| (s.id, s)),
            );
        }
        Ok(out)
    }

    /// Stored derived values of `metric` for hours `from <= hour_ms <= to`: `f(hour, agent id,
    /// value)` for each; returns the hours that have a (valid) row, ascending.
    pub async fn kpi_hours(
        &self,
        metric: &str,
        from: i64,
        to: i64,
        mut f: impl FnMut(i64, &str, f64),
    ) -> sqlx::Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT hour_ms, data FROM kpi_hours WHERE metric = $1 AND hour_ms >= $2 AND hour_ms <= $3 \
             ORDER BY hour_ms",
        )
        .bind(metric)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let mut hours = Vec::with_capacity(rows.len());
        for row in rows {
            let hour: i64 = row.get(0);
            let data: Vec<u8> = row.get(1);
            if decode(&data, |host, v| f(hour, host, v)).is_some() {
                hours.push(hour);
            } else {
                tracing::error!(
                    metric,
                    hour_ms = hour,
                    "corrupt kpi_hours row: derived from the rollups instead"
                );
            }
        }
        Ok(hours)
    }
}

/// Replaces the derived rows of `hour_ms` (in the caller's transaction).
pub async fn write_hour(
    conn: &mut sqlx::AnyConnection,
    hour_ms: i64,
    kpis: &[KpiHour],
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM kpi_hours WHERE hour_ms = $1")
        .bind(hour_ms)
        .execute(&mut *conn)
        .await?;
    for k in kpis.iter().filter(|k| k.hour_ms == hour_ms) {
        sqlx::query("INSERT INTO kpi_hours (metric, hour_ms, data) VALUES ($1, $2, $3)")
            .bind(k.metric)
            .bind(k.hour_ms)
            .bind(encode(&k.values))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(id: i64, agent: &str, name: &str, labels: &[(&str, &str)]) -> (i64, SeriesRow) {
        (
            id,
            SeriesRow {
                id,
                agent_id: agent.into(),
                name: name.into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        )
    }

    fn rollup(series_id: i64, hour_ms: i64, min: f64, max: f64, mean: f64) -> Rollup {
        Rollup {
            series_id,
            hour_ms,
            min,
            max,
            sum: mean * 4.0,
            count: 4,
            last: max,
            last_ms: None,
        }
    }

    #[test]
    fn derived_values_per_host_and_hour() {
        let s: HashMap<i64, SeriesRow> = [
            series(1, "a", CPU, &[("mode", "idle")]),
            series(2, "a", CPU, &[("mode", "user")]),
            series(3, "a", FS_AVAIL, &[("mountpoint", "/")]),
            series(4, "a", FS_SIZE, &[("mountpoint", "/")]),
            series(5, "a", FS_AVAIL, &[("mountpoint", "/data")]),
            series(6, "a", FS_SIZE, &[("mountpoint", "/data")]),
            series(7, "b", MEM_AVAIL, &[]),
            series(8, "b", MEM_TOTAL, &[]),
            series(9, "b", "node_load1", &[]),
        ]
        .into_iter()
        .collect();
        let h = 3_600_000;
        let r = vec![
            rollup(1, h, 0.0, 30.0, 15.0),
            rollup(2, h, 100.0, 110.0, 105.0),
            rollup(3, h, 0.0, 0.0, 40.0),
            rollup(4, h, 0.0, 0.0, 100.0),
            rollup(5, h, 0.0, 0.0, 10.0),
            rollup(6, h, 0.0, 0.0, 50.0),
            rollup(7, h, 0.0, 0.0, 3.0),
            rollup(8, h, 0.0, 0.0, 4.0),
            rollup(9, h, 0.0, 0.0, 2.5),
        ];
        let got = derive_hour(&s, h, &r);
        assert_eq!(got[0].values, vec![("a".to_string(), 1.0 - 30.0 / 40.0)]);
        assert_eq!(got[1].values, vec![("b".to_string(), 0.25)]);
        assert_eq!(got[2].values, vec![("a".to_string(), 0.8)]);
        assert_eq!(
            derive("node_load1", &s, &r),
            BTreeMap::from([(("b".to_string(), h), 2.5)])
        );
    }

    #[test]
    fn encoding_round_trips_and_rejects_corruption() {
        let values = vec![
            ("agent-1".to_string(), 0.125),
            ("代理".to_string(), f64::MIN_POSITIVE),
            (String::new(), -0.0),
        ];
        let data = encode(&values);
        let mut back = Vec::new();
        decode(&data, |h, v| back.push((h.to_string(), v))).unwrap();
        assert_eq!(back.len(), 3);
        for ((a, x), (b, y)) in values.iter().zip(&back) {
            assert_eq!((a, x.to_bits()), (b, y.to_bits()));
        }
        for cut in 0..data.len() {
            let mut calls = 0;
            assert!(decode(&data[..cut], |_, _| calls += 1).is_none(), "{cut}");
            assert_eq!(calls, 0);
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(decode(&longer, |_, _| {}).is_none());
        assert_eq!(decode(&encode(&[]), |_, _| {}), Some(()));
    }
}
