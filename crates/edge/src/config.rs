//! Configuration: Spin variables declared in `spin.toml`, read once per request
//! path. A missing or malformed variable names itself in the error.

/// A variable that is missing or malformed: a deployment mistake, named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration variable `{name}` is not available: {detail}")]
    Missing { name: &'static str, detail: String },
    #[error("configuration variable `{name}` is not a valid number: {raw:?}")]
    NotANumber { name: &'static str, raw: String },
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
