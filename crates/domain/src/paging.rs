//! Cursor paging of a user's lists (the score history, the export): a page
//! size in the request body, and a cursor that names a position by the last
//! line already seen, so lines added while a client pages never shift the
//! pages it has yet to read (an offset would repeat or skip lines).
//!
//! The export walks four lists one after the other ([`Section`]); its cursor
//! ([`ExportCursor`]) names the list and the last line seen in it.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::error::{json_str, json_whole, ValidationError};

/// How many lines a page holds: from 1 to `MAX`, `DEFAULT` when absent. A
/// whole JSON number (`8` or `8.0`, which JSON Schema does not tell apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize<const DEFAULT: u16, const MAX: u16>(u16);

impl<const DEFAULT: u16, const MAX: u16> PageSize<DEFAULT, MAX> {
    pub fn get(self) -> u16 {
        self.0
    }

    /// Validates a JSON value, naming `field` in errors.
    pub fn from_json(value: &Value, field: &str) -> Result<Self, ValidationError> {
        json_whole(value)
            .filter(|n| (1..=u64::from(MAX)).contains(n))
            .map(|n| Self(n as u16))
            .ok_or_else(|| {
                ValidationError::new(field, format!("{field} must be an integer from 1 to {MAX}"))
            })
    }
}

impl<const DEFAULT: u16, const MAX: u16> Default for PageSize<DEFAULT, MAX> {
    fn default() -> Self {
        Self(DEFAULT)
    }
}

impl<'de, const DEFAULT: u16, const MAX: u16> Deserialize<'de> for PageSize<DEFAULT, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::from_json(&value, "limit").map_err(serde::de::Error::custom)
    }
}

/// A position in a list walked newest first: the id of the last line a page
/// showed; the next page holds the lines before it. On the wire an opaque
/// string (today the id in decimal, at most 18 digits, so any id a client
/// can send fits an `int8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor(i64);

impl Cursor {
    /// Most digits a cursor has.
    pub const MAX_DIGITS: usize = 18;

    /// The cursor after the line with this id.
    pub fn after(id: i64) -> Cursor {
        Cursor(id)
    }

    /// The id of the last line shown: the next page starts before it.
    pub fn id(self) -> i64 {
        self.0
    }

    /// Validates `raw`, naming `field` in errors.
    pub fn parse_as(raw: &str, field: &str) -> Result<Cursor, ValidationError> {
        let well_formed = !raw.is_empty()
            && raw.len() <= Self::MAX_DIGITS
            && raw.bytes().all(|b| b.is_ascii_digit())
            && !raw.starts_with('0');
        well_formed
            .then(|| raw.parse().ok().map(Cursor))
            .flatten()
            .ok_or_else(|| {
                ValidationError::new(
                    field,
                    format!("{field} must be a cursor a previous page answered"),
                )
            })
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        json_str(&value, "cursor")
            .and_then(|raw| Cursor::parse_as(raw, "cursor"))
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Cursor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

/// The lists of a user's export, in the order it walks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// Score history lines, newest first (by id).
    History,
    /// Events with their payloads, by processing id.
    Events,
    /// Level transitions, newest first (by id).
    LevelTransitions,
    /// Rejected messages naming the user, newest first (by id).
    RejectedMessages,
}

impl Section {
    pub const ALL: [Section; 4] = [
        Section::History,
        Section::Events,
        Section::LevelTransitions,
        Section::RejectedMessages,
    ];

    /// Its name in the export and in cursors.
    pub fn as_str(self) -> &'static str {
        match self {
            Section::History => "history",
            Section::Events => "events",
            Section::LevelTransitions => "level_transitions",
            Section::RejectedMessages => "rejected_messages",
        }
    }

    /// The list after this one, if any.
    pub fn next(self) -> Option<Section> {
        Section::ALL
            .iter()
            .skip_while(|s| **s != self)
            .nth(1)
            .copied()
    }
}

/// Where an export page starts: a list, and the last line already seen in it
/// (none: the list from its start). On the wire `<section>` or
/// `<section>:<key>`, the key a processing id for `events`, else a
/// [`Cursor`]'s digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportCursor {
    pub section: Section,
    pub after: Option<ExportKey>,
}

/// The last line seen in a list of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKey {
    Id(Cursor),
    ProcessingId(uuid::Uuid),
}

impl ExportCursor {
    /// The first page's position.
    pub const START: ExportCursor = ExportCursor {
        section: Section::History,
        after: None,
    };

    /// Validates `raw`, naming `field` in errors.
    pub fn parse_as(raw: &str, field: &str) -> Result<ExportCursor, ValidationError> {
        let invalid = || {
            ValidationError::new(
                field,
                format!("{field} must be a cursor a previous page answered"),
            )
        };
        let (name, key) = match raw.split_once(':') {
            Some((name, key)) => (name, Some(key)),
            None => (raw, None),
        };
        let section = Section::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(invalid)?;
        let after = match (section, key) {
            (_, None) => None,
            (Section::Events, Some(key)) => {
                // Only the lowercase hyphenated form, the one pages answer.
                let id = uuid::Uuid::parse_str(key).map_err(|_| invalid())?;
                if id.hyphenated().to_string() != key {
                    return Err(invalid());
                }
                Some(ExportKey::ProcessingId(id))
            }
            (_, Some(key)) => Some(ExportKey::Id(
                Cursor::parse_as(key, field).map_err(|_| invalid())?,
            )),
        };
        Ok(ExportCursor { section, after })
    }
}

impl std::fmt::Display for ExportCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.section.as_str())?;
        match self.after {
            None => Ok(()),
            Some(ExportKey::Id(cursor)) => write!(f, ":{}", cursor.id()),
            Some(ExportKey::ProcessingId(id)) => write!(f, ":{}", id.hyphenated()),
        }
    }
}

impl<'de> Deserialize<'de> for ExportCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        json_str(&value, "cursor")
            .and_then(|raw| ExportCursor::parse_as(raw, "cursor"))
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for ExportCursor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    type Size = PageSize<50, 100>;

    #[test]
    fn a_page_size_is_a_whole_number_within_its_bounds() {
        assert_eq!(Size::default().get(), 50);
        assert_eq!(serde_json::from_value::<Size>(json!(1)).unwrap().get(), 1);
        assert_eq!(
            serde_json::from_value::<Size>(json!(100.0)).unwrap().get(),
            100
        );
        for bad in [
            json!(0),
            json!(101),
            json!(-1),
            json!(2.5),
            json!("5"),
            json!(null),
        ] {
            let error = serde_json::from_value::<Size>(bad.clone()).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("limit must be an integer from 1 to 100"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn a_cursor_refuses_anything_but_a_positive_decimal_that_fits() {
        for bad in [
            json!(""),
            json!("0"),
            json!("012"),
            json!("-5"),
            json!("+5"),
            json!(" 5"),
            json!("5a"),
            json!("1234567890123456789"),
        ] {
            let error = serde_json::from_value::<Cursor>(bad.clone()).unwrap_err();
            assert!(
                error.to_string().contains("cursor must be a cursor"),
                "{bad}: {error}"
            );
        }
        for bad in [json!(5), json!(null)] {
            let error = serde_json::from_value::<Cursor>(bad.clone()).unwrap_err();
            assert!(
                error.to_string().contains("cursor must be a string"),
                "{bad}: {error}"
            );
        }
        assert_eq!(
            serde_json::from_value::<Cursor>(json!("999999999999999999"))
                .unwrap()
                .id(),
            999_999_999_999_999_999
        );
    }

    #[test]
    fn an_export_cursor_names_a_section_and_the_last_line_seen_in_it() {
        let id = "0b0e6a0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
        for good in [
            "history".to_owned(),
            "history:12".to_owned(),
            format!("events:{id}"),
            "level_transitions:3".to_owned(),
            "rejected_messages".to_owned(),
        ] {
            let cursor = ExportCursor::parse_as(&good, "cursor").unwrap();
            assert_eq!(cursor.to_string(), good);
        }
        for bad in [
            "",
            "history:",
            "history:0",
            "events:12",
            "events:0B0E6A0E-1C2D-4E5F-8A9B-0C1D2E3F4A5B",
            "events:0b0e6a0e1c2d4e5f8a9b0c1d2e3f4a5b",
            "status",
            "History",
            "history:1:2",
        ] {
            assert!(ExportCursor::parse_as(bad, "cursor").is_err(), "{bad}");
        }
        assert_eq!(Section::History.next(), Some(Section::Events));
        assert_eq!(Section::RejectedMessages.next(), None);
    }

    proptest! {
        #[test]
        fn every_cursor_a_page_answers_reads_back_as_itself(id in 1i64..1_000_000_000_000_000_000) {
            let wire = serde_json::to_value(Cursor::after(id)).unwrap();
            prop_assert_eq!(serde_json::from_value::<Cursor>(wire).unwrap(), Cursor::after(id));
        }
    }
}
