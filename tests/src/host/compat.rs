//! Which Spin release line the host imitates, where Spin's lines differ in
//! ways a component can observe.
//!
//! Today the lines differ only in outbound Postgres `query` (see
//! [`crate::host::postgres`] for the details and where each behaviour was
//! read in Spin's source):
//!
//! | line | rows | columns of an empty result | error raised while rows stream back |
//! |------|------|----------------------------|-------------------------------------|
//! | 3.6  | streamed | none | `text("<anyhow Debug of the tokio-postgres error>")` |
//! | 4.0  | streamed | — (the call never returns: spinframework/spin#3671; here a trap) | `text("<anyhow Debug of the WIT error>")` |
//! | 4.1  | streamed | from the prepared statement | as 4.0 |
//!
//! Everything else (TLS, `execute`, type mapping, pooling) is the same in
//! every line.

use std::fmt;
use std::str::FromStr;

/// The environment variable [`SpinCompat::from_env`] reads.
pub const SPIN_COMPAT_ENV: &str = "SPIN_COMPAT";

/// A Spin release line whose outbound-Postgres behaviour the host reproduces,
/// bugs included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpinCompat {
    /// Spin 3.6.x, as SpinKube embeds it (read at tag `v3.6.3`).
    V3_6,
    /// Spin 4.0.0–4.0.2 (read at tag `v4.0.2`): a `query` that matches no
    /// rows never returns (spinframework/spin#3671). The host traps instead
    /// and records the statement (see `App::spin_compat_violations`).
    V4_0,
    /// Later 4.x releases carrying commit f0256b37 ("Fix sync Postgres
    /// deadlocking on empty result set"): an empty result returns, with the
    /// columns of the prepared statement.
    V4_1,
}

impl SpinCompat {
    /// Every line, oldest first.
    pub const ALL: [SpinCompat; 3] = [SpinCompat::V3_6, SpinCompat::V4_0, SpinCompat::V4_1];

    /// The line named by `SPIN_COMPAT` (`3.6`, `4.0` or `4.1`); `4.0` when
    /// it is unset or empty.
    ///
    /// # Panics
    /// When `SPIN_COMPAT` holds anything else: a typo must not silently test
    /// against the wrong Spin.
    pub fn from_env() -> SpinCompat {
        Self::from_env_value(std::env::var(SPIN_COMPAT_ENV))
    }

    fn from_env_value(value: Result<String, std::env::VarError>) -> SpinCompat {
        match value {
            Ok(v) if !v.trim().is_empty() => v.parse().unwrap_or_else(|e| {
                panic!("{SPIN_COMPAT_ENV}={v:?}: {e}");
            }),
            Ok(_) | Err(std::env::VarError::NotPresent) => SpinCompat::V4_0,
            Err(std::env::VarError::NotUnicode(v)) => {
                panic!("{SPIN_COMPAT_ENV}={v:?}: not UTF-8; expected 3.6, 4.0 or 4.1")
            }
        }
    }

    /// The line's name: `3.6`, `4.0` or `4.1`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpinCompat::V3_6 => "3.6",
            SpinCompat::V4_0 => "4.0",
            SpinCompat::V4_1 => "4.1",
        }
    }
}

impl Default for SpinCompat {
    /// [`SpinCompat::from_env`].
    fn default() -> Self {
        SpinCompat::from_env()
    }
}

impl fmt::Display for SpinCompat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Spin line name that is not `3.6`, `4.0` or `4.1`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown Spin compatibility line {0:?}; expected 3.6, 4.0 or 4.1")]
pub struct UnknownSpinCompat(pub String);

impl FromStr for SpinCompat {
    type Err = UnknownSpinCompat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "3.6" => Ok(SpinCompat::V3_6),
            "4.0" => Ok(SpinCompat::V4_0),
            "4.1" => Ok(SpinCompat::V4_1),
            other => Err(UnknownSpinCompat(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in SpinCompat::ALL {
            assert_eq!(c.to_string().parse::<SpinCompat>().unwrap(), c);
        }
        assert_eq!("3.6".parse::<SpinCompat>().unwrap(), SpinCompat::V3_6);
        assert_eq!("4.0".parse::<SpinCompat>().unwrap(), SpinCompat::V4_0);
        assert_eq!("4.1".parse::<SpinCompat>().unwrap(), SpinCompat::V4_1);
        for bad in ["", "4", "4.0.2", "v4.0", "3.5"] {
            assert!(bad.parse::<SpinCompat>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_environment_defaults_to_4_0() {
        use std::env::VarError;
        assert_eq!(
            SpinCompat::from_env_value(Err(VarError::NotPresent)),
            SpinCompat::V4_0
        );
        assert_eq!(
            SpinCompat::from_env_value(Ok(String::new())),
            SpinCompat::V4_0
        );
        assert_eq!(
            SpinCompat::from_env_value(Ok("3.6".into())),
            SpinCompat::V3_6
        );
        assert_eq!(
            SpinCompat::from_env_value(Ok("4.1".into())),
            SpinCompat::V4_1
        );
    }

    #[test]
    #[should_panic(expected = "SPIN_COMPAT=\"4.0.2\": unknown Spin compatibility line")]
    fn a_bad_environment_value_panics_clearly() {
        SpinCompat::from_env_value(Ok("4.0.2".into()));
    }
}
