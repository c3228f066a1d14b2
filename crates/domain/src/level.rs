//! Friendship levels and the score rules behind them.
//!
//! The level is a pure function of the score (the database computes the same
//! rule in a generated column), and a score is never negative.

use crate::error::string_enum;

/// Lowest score of an acquaintance (inclusive).
pub const ACQUAINTANCE_MIN_SCORE: f64 = 100.0;
/// Lowest score of a friend (inclusive).
pub const FRIEND_MIN_SCORE: f64 = 500.0;

string_enum! {
    /// How close the friendship is; ordered `Stranger < Acquaintance < Friend`.
    pub enum Level (field = "friendship_level") {
        /// score < 100
        Stranger => "stranger",
        /// 100 <= score < 500
        Acquaintance => "acquaintance",
        /// score >= 500
        Friend => "friend",
    }
}

impl Level {
    /// The level of a score. Anything below 100, including a negative or NaN
    /// score (which [`floor_score`] never produces), is `Stranger`.
    pub fn from_score(score: f64) -> Self {
        if score >= FRIEND_MIN_SCORE {
            Level::Friend
        } else if score >= ACQUAINTANCE_MIN_SCORE {
            Level::Acquaintance
        } else {
            Level::Stranger
        }
    }

    /// The lowest score that has this level.
    pub fn min_score(self) -> f64 {
        match self {
            Level::Stranger => 0.0,
            Level::Acquaintance => ACQUAINTANCE_MIN_SCORE,
            Level::Friend => FRIEND_MIN_SCORE,
        }
    }
}

/// Clamps a raw score to the allowed range: `max(0, raw)`, never `-0.0`.
/// A non-finite input (NaN or ±infinity) can only come from a bug upstream;
/// it becomes `0` so the stored score stays a finite, non-negative number.
pub fn floor_score(raw: f64) -> f64 {
    if raw.is_finite() && raw > 0.0 {
        raw
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn level_boundaries_are_inclusive_lower_bounds() {
        assert_eq!(Level::from_score(0.0), Level::Stranger);
        assert_eq!(Level::from_score(99.999), Level::Stranger);
        assert_eq!(Level::from_score(100.0), Level::Acquaintance);
        assert_eq!(Level::from_score(499.5), Level::Acquaintance);
        assert_eq!(Level::from_score(500.0), Level::Friend);
    }

    #[test]
    fn every_level_round_trips_through_its_string_and_json_forms() {
        for level in Level::ALL {
            assert_eq!(level.as_str().parse::<Level>().unwrap(), *level);
            let json = serde_json::to_string(level).unwrap();
            assert_eq!(json, format!("\"{}\"", level.as_str()));
            assert_eq!(serde_json::from_str::<Level>(&json).unwrap(), *level);
            assert_eq!(Level::from_score(level.min_score()), *level);
        }
        let strings: Vec<&str> = Level::ALL.iter().map(|l| l.as_str()).collect();
        assert_eq!(strings, ["stranger", "acquaintance", "friend"]);
    }

    #[test]
    fn an_unknown_level_is_rejected_with_the_allowed_values() {
        let err = "buddy".parse::<Level>().unwrap_err();
        assert_eq!(
            err.message,
            "friendship_level must be one of stranger, acquaintance, friend"
        );
        assert!(serde_json::from_str::<Level>("\"Friend\"").is_err());
    }

    #[test]
    fn floor_score_turns_negatives_and_non_finite_values_into_zero() {
        assert_eq!(floor_score(-3.5), 0.0);
        assert_eq!(floor_score(f64::NAN), 0.0);
        assert_eq!(floor_score(f64::INFINITY), 0.0);
        assert!(floor_score(-0.0).is_sign_positive());
        assert_eq!(floor_score(3.5), 3.5);
    }

    proptest! {
        #[test]
        fn level_always_matches_the_score(score in 0.0f64..10_000.0) {
            let expected = if score < 100.0 {
                Level::Stranger
            } else if score < 500.0 {
                Level::Acquaintance
            } else {
                Level::Friend
            };
            prop_assert_eq!(Level::from_score(score), expected);
            prop_assert!(Level::from_score(score).min_score() <= score);
        }

        #[test]
        fn level_never_decreases_as_the_score_grows(a in -1e6f64..1e6, b in -1e6f64..1e6) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(Level::from_score(low) <= Level::from_score(high));
        }

        #[test]
        fn a_floored_score_is_never_negative(raw in any::<f64>()) {
            let floored = floor_score(raw);
            prop_assert!(floored.is_finite());
            prop_assert!(floored >= 0.0 && floored.is_sign_positive());
            if raw.is_finite() && raw > 0.0 {
                prop_assert_eq!(floored, raw);
            }
        }
    }
}
