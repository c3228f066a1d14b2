//! Configuration: Spin variables declared in `spin.toml`, read once per request
//! path. A missing or malformed variable names itself in the error.

/// A variable that is missing or malformed: a deployment mistake, named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration variable `{name}` is not available: {detail}")]
    Missing { name: &'static str, detail: String },
    #[error("configuration variable `{name}` is not a valid number: {raw:?}")]
    NotANumber { name: &'static str, raw: String },
    #[error("configuration variable `{name}` is out of range: {raw:?} (expected {expected})")]
    OutOfRange {
        name: &'static str,
        raw: String,
        expected: &'static str,
    },
}

/// Reads a component variable, as text.
pub fn text(name: &'static str) -> Result<String, ConfigError> {
    spin_sdk::variables::get(name).map_err(|e| ConfigError::Missing {
        name,
        detail: e.to_string(),
    })
}

/// Reads a component variable that holds a number.
pub fn number<T: std::str::FromStr>(name: &'static str) -> Result<T, ConfigError> {
    let raw = text(name)?;
    raw.trim()
        .parse()
        .map_err(|_| ConfigError::NotANumber { name, raw })
}

/// The Postgres connection string (`db_url`).
pub fn db_url() -> Result<String, ConfigError> {
    text("db_url")
}

/// The Redis address for notifications and counters (`redis_url`).
pub fn redis_url() -> Result<String, ConfigError> {
    text("redis_url")
}

/// The channel the scorer listens on (`events_channel`).
pub fn events_channel() -> Result<String, ConfigError> {
    text("events_channel")
}

/// How the scorer retries a failed event.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; then the event is `failed`.
    pub max_attempts: u32,
    /// Base of the exponential backoff, milliseconds.
    pub base_ms: u64,
}

impl RetryPolicy {
    pub fn load() -> Result<Self, ConfigError> {
        Ok(RetryPolicy {
            max_attempts: number("max_attempts")?,
            base_ms: number("retry_base_ms")?,
        })
    }
}

/// How long old rows are kept before the scorer's idle wake-ups prune them
/// (`crate::store::retention`). Each is a whole number of days from 1 to
/// 65,535.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Days a processed event is kept after it was processed
    /// (`event_retention_days`).
    pub event_days: std::num::NonZeroU16,
    /// Days a rejected Redis message is kept after it was received
    /// (`rejected_retention_days`).
    pub rejected_days: std::num::NonZeroU16,
}

impl Retention {
    pub fn load() -> Result<Self, ConfigError> {
        Ok(Retention {
            event_days: number("event_retention_days")?,
            rejected_days: number("rejected_retention_days")?,
        })
    }
}

/// Why a limit of [`limits`] is refused.
fn invalid(name: &'static str, raw: String) -> ConfigError {
    ConfigError::NotANumber { name, raw }
}

/// The most topics a user keeps (`max_topics_per_user`): a whole number from
/// 1 to 65,535.
pub fn max_topics_per_user() -> Result<u16, ConfigError> {
    let value: std::num::NonZeroU16 = number("max_topics_per_user")?;
    Ok(value.get())
}

/// The daily score-gain cap per user (`daily_score_cap`): a finite number of
/// points, 0 or more (0 turns it off).
pub fn daily_score_cap() -> Result<f64, ConfigError> {
    let value: f64 = number("daily_score_cap")?;
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(invalid("daily_score_cap", value.to_string()))
    }
}

/// The bounds every change of the scorer keeps (`max_topics_per_user`,
/// `daily_score_cap`).
pub fn limits() -> Result<friendship_domain::Limits, ConfigError> {
    Ok(friendship_domain::Limits {
        max_topics_per_user: max_topics_per_user()?,
        daily_score_cap: daily_score_cap()?,
    })
}

/// Inactivity decay (`decay_after_days`, a whole number of days from 0 to
/// 65,535; `decay_points_per_day`, a finite number of points, 0 or more: 0
/// turns decay off).
pub fn decay() -> Result<friendship_domain::Decay, ConfigError> {
    decay_from(text("decay_after_days")?, text("decay_points_per_day")?)
}

/// [`decay`] from the variables' texts.
fn decay_from(after_days: String, points: String) -> Result<friendship_domain::Decay, ConfigError> {
    let after_days = after_days
        .trim()
        .parse::<u16>()
        .map_err(|_| ConfigError::NotANumber {
            name: "decay_after_days",
            raw: after_days.clone(),
        })?;
    let points_per_day = match points.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => value,
        Ok(_) => {
            return Err(ConfigError::OutOfRange {
                name: "decay_points_per_day",
                raw: points,
                expected: "a finite number of points, 0 or more; 0 turns decay off",
            })
        }
        Err(_) => {
            return Err(ConfigError::NotANumber {
                name: "decay_points_per_day",
                raw: points,
            })
        }
    };
    Ok(friendship_domain::Decay {
        after_days,
        points_per_day,
    })
}

/// The Redis Stream level changes are published on (`level_changes_stream`):
/// any non-empty key.
pub fn level_changes_stream() -> Result<String, ConfigError> {
    stream_key_from(text("level_changes_stream")?)
}

/// [`level_changes_stream`] from the variable's text.
fn stream_key_from(raw: String) -> Result<String, ConfigError> {
    if raw.trim().is_empty() {
        return Err(ConfigError::OutOfRange {
            name: "level_changes_stream",
            raw,
            expected: "the key of a Redis Stream, not empty",
        });
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decay(after: &str, points: &str) -> Result<friendship_domain::Decay, String> {
        decay_from(after.into(), points.into()).map_err(|e| e.to_string())
    }

    #[test]
    fn decay_settings_are_read_and_bad_ones_named_with_what_is_expected() {
        let on = decay(" 7 ", "2.5").unwrap();
        assert_eq!((on.after_days, on.points_per_day), (7, 2.5));
        assert!(on.is_on());
        assert!(!decay("0", "0").unwrap().is_on(), "0 points: off");
        assert_eq!(
            decay("-1", "1").unwrap_err(),
            "configuration variable `decay_after_days` is not a valid number: \"-1\""
        );
        assert!(decay("65536", "1").is_err());
        assert!(decay("1.5", "1").is_err());
        assert_eq!(
            decay("7", "-2").unwrap_err(),
            "configuration variable `decay_points_per_day` is out of range: \"-2\" \
             (expected a finite number of points, 0 or more; 0 turns decay off)"
        );
        for bad in ["NaN", "inf", "-inf"] {
            assert!(
                decay("7", bad).unwrap_err().contains("out of range"),
                "{bad}"
            );
        }
        assert!(decay("7", "ten")
            .unwrap_err()
            .contains("not a valid number"));
    }

    #[test]
    fn the_level_changes_stream_is_any_non_empty_key() {
        assert_eq!(
            stream_key_from("friendship-level-changes".into()).unwrap(),
            "friendship-level-changes"
        );
        assert!(stream_key_from("  ".into())
            .unwrap_err()
            .to_string()
            .contains("`level_changes_stream` is out of range"));
    }
}
