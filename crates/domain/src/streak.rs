//! The daily streak: how many consecutive UTC calendar days the user has
//! talked, counting today.

use chrono::{DateTime, NaiveDate, Utc};

/// The streak after an interaction on `today`, given the previous one.
///
/// - first interaction (`last_interaction` is `None`) → 1;
/// - same UTC day → `current`, but at least 1;
/// - the next UTC day → `current + 1` (saturating);
/// - a gap of two days or more → 1.
///
/// Clock skew: if `today` is *before* the last interaction, the interaction
/// is treated as happening on the same day (the streak is kept, at least 1),
/// so a skewed clock can neither grow nor break a streak.
pub fn next_streak(last_interaction: Option<NaiveDate>, current: u32, today: NaiveDate) -> u32 {
    let Some(last) = last_interaction else {
        return 1;
    };
    match today.signed_duration_since(last).num_days() {
        days if days <= 0 => current.max(1),
        1 => current.saturating_add(1),
        _ => 1,
    }
}

/// [`next_streak`] over timestamps, taking their UTC calendar days.
pub fn next_streak_at(
    last_interaction: Option<DateTime<Utc>>,
    current: u32,
    now: DateTime<Utc>,
) -> u32 {
    next_streak(
        last_interaction.map(|t| t.date_naive()),
        current,
        now.date_naive(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Days, TimeZone};
    use proptest::prelude::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    #[test]
    fn the_first_interaction_starts_a_streak_of_one() {
        assert_eq!(next_streak(None, 0, day(1)), 1);
        assert_eq!(next_streak(None, 9, day(1)), 1);
    }

    #[test]
    fn a_second_interaction_on_the_same_day_keeps_the_streak() {
        assert_eq!(next_streak(Some(day(5)), 4, day(5)), 4);
        assert_eq!(next_streak(Some(day(5)), 0, day(5)), 1);
    }

    #[test]
    fn the_next_day_adds_one() {
        assert_eq!(next_streak(Some(day(5)), 4, day(6)), 5);
        assert_eq!(next_streak(Some(day(5)), u32::MAX, day(6)), u32::MAX);
    }

    #[test]
    fn streak_resets_after_a_two_day_gap() {
        assert_eq!(next_streak(Some(day(5)), 4, day(7)), 1);
        assert_eq!(next_streak(Some(day(5)), 4, day(30)), 1);
    }

    #[test]
    fn an_interaction_dated_before_the_last_one_keeps_the_streak() {
        assert_eq!(next_streak(Some(day(5)), 4, day(4)), 4);
        assert_eq!(next_streak(Some(day(5)), 0, day(1)), 1);
    }

    #[test]
    fn days_are_utc_calendar_days_not_24_hour_periods() {
        let late = Utc.with_ymd_and_hms(2026, 3, 5, 23, 59, 0).unwrap();
        let early_next = Utc.with_ymd_and_hms(2026, 3, 6, 0, 1, 0).unwrap();
        assert_eq!(next_streak_at(Some(late), 2, early_next), 3);
        let next_morning = Utc.with_ymd_and_hms(2026, 3, 5, 0, 0, 0).unwrap();
        let that_night = Utc.with_ymd_and_hms(2026, 3, 5, 23, 59, 59).unwrap();
        assert_eq!(next_streak_at(Some(next_morning), 2, that_night), 2);
    }

    /// The streak defined independently: the number of distinct days in the
    /// run of consecutive days that ends with the latest interaction.
    fn trailing_run(days: &[NaiveDate]) -> u32 {
        let mut distinct: Vec<NaiveDate> = days.to_vec();
        distinct.dedup();
        let mut run = 1;
        for pair in distinct.windows(2).rev() {
            if pair[0].succ_opt() == Some(pair[1]) {
                run += 1;
            } else {
                break;
            }
        }
        run
    }

    proptest! {
        #[test]
        fn the_streak_counts_the_trailing_run_of_consecutive_days(
            start in 0u64..20_000,
            gaps in proptest::collection::vec(prop_oneof![3 => Just(0u64), 5 => Just(1u64), 2 => 2u64..10], 1..40),
        ) {
            let mut today = NaiveDate::from_ymd_opt(1990, 1, 1).unwrap() + Days::new(start);
            let mut history = vec![today];
            let mut streak = next_streak(None, 0, today);
            prop_assert_eq!(streak, 1);
            for gap in gaps {
                let last = today;
                today = today + Days::new(gap);
                history.push(today);
                streak = next_streak(Some(last), streak, today);
                prop_assert_eq!(streak, trailing_run(&history));
            }
        }

        #[test]
        fn a_skewed_clock_never_changes_the_streak_except_to_start_it(
            current in 0u32..1000, back in 1u64..400,
        ) {
            let last = day(20);
            let today = last - Days::new(back);
            prop_assert_eq!(next_streak(Some(last), current, today), current.max(1));
        }
    }
}
