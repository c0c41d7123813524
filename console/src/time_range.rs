//! Time ranges as the console's URLs spell them: `range=15m|1h|24h|7d` (relative to now), or
//! `from=..&to=..` (RFC 3339 or epoch milliseconds) for a custom range. One parser, pure,
//! with the histogram interval that suits each span.

use time::{format_description::well_known::Rfc3339, Duration, OffsetDateTime};

use crate::error::ApiError;

/// The preset spans the range picker offers.
pub const PRESETS: [(&str, i64); 4] = [
    ("15m", 15 * 60),
    ("1h", 3600),
    ("24h", 86_400),
    ("7d", 7 * 86_400),
];
/// Longest custom range accepted.
pub const MAX_SPAN: Duration = Duration::days(400);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeSpec {
    /// The last `seconds` up to now, named as in the URL.
    Preset { name: &'static str, seconds: i64 },
    Custom {
        from: OffsetDateTime,
        to: OffsetDateTime,
    },
}

impl Default for RangeSpec {
    fn default() -> Self {
        RangeSpec::Preset {
            name: "24h",
            seconds: 86_400,
        }
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .expect("an OffsetDateTime formats as RFC 3339")
}

pub fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &Rfc3339)
}

/// RFC 3339, or epoch milliseconds.
fn parse_instant(field: &str, value: &str) -> Result<OffsetDateTime, ApiError> {
    if let Ok(ms) = value.parse::<i64>() {
        return OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
            .map_err(|e| ApiError::bad(field, format!("{value:?}: {e}")));
    }
    parse_rfc3339(value).map_err(|e| {
        ApiError::bad(
            field,
            format!(
                "{value:?} is neither RFC 3339 (2026-12-02T06:00:00Z) nor epoch milliseconds: {e}"
            ),
        )
    })
}

impl RangeSpec {
    /// From the `range`, `from` and `to` parameters (all optional: the default is 24h).
    pub fn parse(
        range: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Self, ApiError> {
        let custom = from.is_some() || to.is_some();
        match (range.filter(|r| !r.is_empty()), custom) {
            (Some(r), false) => PRESETS
                .iter()
                .find(|(name, _)| *name == r)
                .map(|&(name, seconds)| RangeSpec::Preset { name, seconds })
                .ok_or_else(|| {
                    ApiError::bad("range", format!("{r:?}: use 15m, 1h, 24h, 7d, or from/to"))
                }),
            (None, false) => Ok(RangeSpec::default()),
            (Some(r), true) if r != "custom" => Err(ApiError::bad(
                "range",
                "give either range or from/to, not both",
            )),
            (_, true) => {
                let from =
                    from.ok_or_else(|| ApiError::bad("from", "a custom range needs from"))?;
                let from = parse_instant("from", from)?;
                let to = match to {
                    Some(t) => parse_instant("to", t)?,
                    None => OffsetDateTime::now_utc(),
                };
                if to <= from {
                    return Err(ApiError::bad("to", "must be after from"));
                }
                if to - from > MAX_SPAN {
                    return Err(ApiError::bad("from", "the range may span at most 400 days"));
                }
                Ok(RangeSpec::Custom { from, to })
            }
        }
    }

    /// The absolute bounds, relative ones taken at `now`.
    pub fn bounds(&self, now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
        match self {
            RangeSpec::Preset { seconds, .. } => (now - Duration::seconds(*seconds), now),
            RangeSpec::Custom { from, to } => (*from, *to),
        }
    }

    /// The URL parameters that give this range back.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        match self {
            RangeSpec::Preset { name, .. } => vec![("range", (*name).to_owned())],
            RangeSpec::Custom { from, to } => vec![("from", rfc3339(*from)), ("to", rfc3339(*to))],
        }
    }

    /// A `date_histogram` interval giving 30-120 buckets over the span.
    pub fn interval(&self, now: OffsetDateTime) -> &'static str {
        let (from, to) = self.bounds(now);
        let span = (to - from).whole_seconds();
        const STEPS: [(i64, &str); 10] = [
            (10, "10s"),
            (30, "30s"),
            (60, "1m"),
            (300, "5m"),
            (900, "15m"),
            (1800, "30m"),
            (3600, "1h"),
            (3 * 3600, "3h"),
            (12 * 3600, "12h"),
            (86_400, "1d"),
        ];
        STEPS
            .iter()
            .find(|(step, _)| span / step <= 120)
            .map_or("1d", |(_, name)| name)
    }

    /// An Elasticsearch `range` clause on `@timestamp`.
    pub fn clause(&self, now: OffsetDateTime) -> serde_json::Value {
        let (from, to) = self.bounds(now);
        serde_json::json!({"range": {"@timestamp": {"gte": rfc3339(from), "lte": rfc3339(to)}}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_default() {
        assert_eq!(
            RangeSpec::parse(None, None, None).unwrap(),
            RangeSpec::default()
        );
        let r = RangeSpec::parse(Some("15m"), None, None).unwrap();
        let now = OffsetDateTime::now_utc();
        let (f, t) = r.bounds(now);
        assert_eq!((t - f).whole_minutes(), 15);
        assert_eq!(r.interval(now), "10s");
        assert_eq!(RangeSpec::default().interval(now), "15m");
        assert_eq!(
            RangeSpec::parse(Some("7d"), None, None)
                .unwrap()
                .interval(now),
            "3h"
        );
    }

    #[test]
    fn custom_ranges_in_both_spellings() {
        // 1796169600000 ms = 2026-12-02T00:00:00Z
        let r =
            RangeSpec::parse(None, Some("2026-12-01T00:00:00Z"), Some("1796169600000")).unwrap();
        let RangeSpec::Custom { from, to } = r else {
            panic!("{r:?}")
        };
        assert_eq!((to - from).whole_hours(), 24);
        assert_eq!(r.to_query()[1], ("to", "2026-12-02T00:00:00Z".to_owned()));
    }

    #[test]
    fn bad_ranges_name_the_parameter() {
        let field = |e: ApiError| match e {
            ApiError::BadInput { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(RangeSpec::parse(Some("2w"), None, None).unwrap_err()),
            "range"
        );
        assert_eq!(
            field(RangeSpec::parse(None, Some("yesterday"), None).unwrap_err()),
            "from"
        );
        assert_eq!(
            field(
                RangeSpec::parse(
                    None,
                    Some("2026-12-02T00:00:00Z"),
                    Some("2026-12-01T00:00:00Z")
                )
                .unwrap_err()
            ),
            "to"
        );
        assert_eq!(
            field(RangeSpec::parse(None, None, Some("2026-12-01T00:00:00Z")).unwrap_err()),
            "from"
        );
    }
}
