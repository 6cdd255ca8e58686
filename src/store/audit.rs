//! The audit trail in the store: batched inserts (idempotent by id, so a
//! replayed spool never duplicates), filtered pages for the admin API, and
//! retention.

use sqlx::AssertSqlSafe;

use super::{Store, StoreError};
use crate::audit::EventRecord;

/// Columns of `audit_events`, in [`EventRecord`] order.
const COLUMNS: [&str; 15] = [
    "id",
    "at",
    "action",
    "category",
    "severity",
    "outcome",
    "reason",
    "request_id",
    "client_ip",
    "method",
    "path",
    "route",
    "user_id",
    "target",
    "instance",
];

/// Rows per INSERT statement (15 parameters each, far below both databases' limits).
const ROWS_PER_STATEMENT: usize = 200;

/// Rows of the next statement when `remaining` (at least one) rows are
/// left: full statements, then powers of two. Only nine statement texts
/// exist, so each is prepared once per connection; a statement of any
/// length would be parsed again for every batch.
fn statement_rows(remaining: usize) -> usize {
    if remaining >= ROWS_PER_STATEMENT { ROWS_PER_STATEMENT } else { 1 << remaining.ilog2() }
}

/// Inserts `records` in one transaction; rows whose id exists are skipped.
pub async fn insert(store: &Store, records: &[EventRecord]) -> Result<(), StoreError> {
    let mut transaction = store.pool().begin().await?;
    let mut rest = records;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(statement_rows(rest.len()));
        rest = tail;
        let mut sql = format!("INSERT INTO audit_events ({}) VALUES ", COLUMNS.join(", "));
        for row in 0..chunk.len() {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..COLUMNS.len() {
                if column > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", row * COLUMNS.len() + column + 1));
            }
            sql.push(')');
        }
        sql.push_str(" ON CONFLICT (id) DO NOTHING");
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for r in chunk {
            query = query
                .bind(&r.id)
                .bind(r.at)
                .bind(&r.action)
                .bind(&r.category)
                .bind(&r.severity)
                .bind(&r.outcome)
                .bind(&r.reason)
                .bind(&r.request_id)
                .bind(&r.client_ip)
                .bind(&r.method)
                .bind(&r.path)
                .bind(&r.route)
                .bind(&r.user)
                .bind(&r.target)
                .bind(&r.instance);
        }
        query.execute(&mut *transaction).await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// Which events to list. Empty fields match everything; `action` ending in
/// `.` or `*` matches a prefix (`login.` → every login event).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// The action, or a prefix of it.
    pub action: Option<String>,
    /// The user or client id.
    pub user: Option<String>,
    /// The client address.
    pub ip: Option<String>,
    /// The route pattern.
    pub route: Option<String>,
    /// `low`, `medium` or `high`: this severity and above.
    pub severity: Option<String>,
    /// From this unix millisecond (inclusive).
    pub since: Option<i64>,
    /// Before this unix millisecond.
    pub until: Option<i64>,
    /// Only events older than this id (the next page after the last id seen).
    pub before: Option<String>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<i64>,
}

/// A value bound to a placeholder of [`list`].
enum Bound {
    Text(String),
    Number(i64),
}

/// One page of events, newest first.
pub async fn list(store: &Store, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<Bound> = Vec::new();
    // `sql` with `$` where the value's placeholder goes.
    let mut add = |sql: &str, value: Bound| {
        values.push(value);
        conditions.push(sql.replace('$', &format!("${}", values.len())));
    };
    let given = |value: &Option<String>| value.as_deref().filter(|v| !v.is_empty()).map(str::to_owned);
    if let Some(action) = given(&filter.action) {
        match action.strip_suffix('*').or_else(|| action.ends_with('.').then_some(action.as_str())) {
            Some(prefix) => {
                let escaped = prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                add("action LIKE $ ESCAPE '\\'", Bound::Text(format!("{escaped}%")));
            }
            None => add("action = $", Bound::Text(action)),
        }
    }
    if let Some(user) = given(&filter.user) {
        add("user_id = $", Bound::Text(user));
    }
    if let Some(ip) = given(&filter.ip) {
        add("client_ip = $", Bound::Text(ip));
    }
    if let Some(route) = given(&filter.route) {
        add("route = $", Bound::Text(route));
    }
    if let Some(before) = given(&filter.before) {
        add("id < $", Bound::Text(before));
    }
    if let Some(since) = filter.since {
        add("at >= $", Bound::Number(since));
    }
    if let Some(until) = filter.until {
        add("at < $", Bound::Number(until));
    }
    match filter.severity.as_deref() {
        Some("high") => conditions.push("severity = 'high'".into()),
        Some("medium") => conditions.push("severity IN ('medium', 'high')".into()),
        _ => {}
    }
    let limit = filter.limit.unwrap_or(50).clamp(1, 500);
    let sql = format!(
        "SELECT {} FROM audit_events {} ORDER BY id DESC LIMIT {limit}",
        COLUMNS.join(", "),
        if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) }
    );
    let mut query = sqlx::query_as::<_, EventRecord>(AssertSqlSafe(sql));
    for value in values {
        query = match value {
            Bound::Text(text) => query.bind(text),
            Bound::Number(number) => query.bind(number),
        };
    }
    Ok(query.fetch_all(store.pool()).await?)
}

/// Deletes events older than `cutoff` (unix milliseconds); returns how many.
pub async fn purge(store: &Store, cutoff: i64) -> Result<u64, StoreError> {
    let result = sqlx::query("DELETE FROM audit_events WHERE at < $1").bind(cutoff).execute(store.pool()).await?;
    Ok(result.rows_affected())
}

/// How many events there are (all, or of one action).
pub async fn count(store: &Store, action: Option<&str>) -> Result<i64, StoreError> {
    let (count,): (i64,) = match action {
        Some(action) => {
            sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = $1")
                .bind(action)
                .fetch_one(store.pool())
                .await?
        }
        None => sqlx::query_as("SELECT COUNT(*) FROM audit_events").fetch_one(store.pool()).await?,
    };
    Ok(count)
}

/// Events per action since `since` (unix milliseconds).
pub async fn count_by_action(store: &Store, since: i64) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(sqlx::query_as("SELECT action, COUNT(*) FROM audit_events WHERE at >= $1 GROUP BY action")
        .bind(since)
        .fetch_all(store.pool())
        .await?)
}

/// Events per time bucket of `bucket_ms` and action since `since`: the
/// bucket is `at / bucket_ms`.
pub async fn count_by_bucket(store: &Store, since: i64, bucket_ms: i64) -> Result<Vec<(i64, String, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT at / $2 AS bucket, action, COUNT(*) FROM audit_events WHERE at >= $1 GROUP BY at / $2, action",
    )
    .bind(since)
    .bind(bucket_ms)
    .fetch_all(store.pool())
    .await?)
}

/// One event by id.
pub async fn find(store: &Store, id: &str) -> Result<Option<EventRecord>, StoreError> {
    Ok(sqlx::query_as(AssertSqlSafe(format!("SELECT {} FROM audit_events WHERE id = $1", COLUMNS.join(", "))))
        .bind(id)
        .fetch_optional(store.pool())
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_cover_every_row_with_few_distinct_lengths() {
        let mut lengths = std::collections::BTreeSet::new();
        for total in 1..=1000 {
            let (mut rest, mut statements) = (total, 0);
            while rest > 0 {
                let rows = statement_rows(rest);
                assert!((1..=rest).contains(&rows), "{total}: {rows} of {rest}");
                lengths.insert(rows);
                rest -= rows;
                statements += 1;
            }
            assert!(statements <= total / ROWS_PER_STATEMENT + 8, "{total} rows in {statements} statements");
        }
        assert_eq!(lengths.into_iter().collect::<Vec<_>>(), [1, 2, 4, 8, 16, 32, 64, 128, 200]);
    }
}
