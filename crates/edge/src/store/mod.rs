//! Storage: every read and write of the service's Postgres state, as typed
//! functions over the statements of `friendship-queries`, one module per
//! concern as there: [`events`], [`friendship`] (inactivity decay too),
//! [`level_changes`] (the outbox), [`mappings`], [`metrics`], [`rejected`],
//! [`retention`], [`health`], [`user_data`] (history, export, erasure); every
//! list pages through [`paged`].
//! Nothing outside this module, [`crate::db`] and [`crate::doorbell`] names
//! a SQL statement.

pub mod events;
pub mod friendship;
pub mod health;
pub mod level_changes;
pub mod mappings;
pub mod metrics;
pub mod paged;
pub mod rejected;
pub mod retention;
pub mod user_data;

pub use events::*;
pub use friendship::*;
pub use health::*;
pub use level_changes::*;
pub use mappings::*;
pub use metrics::*;
pub use paged::*;
pub use rejected::*;
pub use retention::*;
pub use user_data::*;

/// Deserializes a JSON (or JSONB) column read as `::text` into its type.
pub(crate) fn json_text<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let text = <String as serde::Deserialize>::deserialize(d)?;
    serde_json::from_str(&text).map_err(serde::de::Error::custom)
}

/// Deserializes a text column through the domain type's `FromStr`, the one
/// mapping of each database enum (`Level`, `AgentType`, `Emotion`, …).
pub(crate) mod parsed {
    use serde::{de::Error, Deserialize, Deserializer};
    use std::str::FromStr;

    pub fn deserialize<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|_| D::Error::custom(format!("unexpected stored value {text:?}")))
    }

    /// As the parent module, for a nullable column.
    pub mod option {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>, T: FromStr>(
            d: D,
        ) -> Result<Option<T>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(text) => text
                    .parse()
                    .map(Some)
                    .map_err(|_| D::Error::custom(format!("unexpected stored value {text:?}"))),
            }
        }
    }
}
