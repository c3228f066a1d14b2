//! When the scorer tries a failed event again: exponential backoff with full
//! jitter (a uniform delay between zero and `base * 2^(attempt - 1)`), capped,
//! so that many events failing together do not retry in lockstep.

use std::time::Duration;

use rand::Rng;

/// The longest delay before a retry, whatever the attempt.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The ceiling of the delay after failed attempt number `attempt` (1-based).
pub fn backoff_ceiling(attempt: u32, base_ms: u64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let ms = base_ms.saturating_mul(1u64 << exponent);
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

/// The delay before the next attempt after failed attempt number `attempt`.
pub fn backoff_delay<R: Rng + ?Sized>(attempt: u32, base_ms: u64, rng: &mut R) -> Duration {
    let ceiling = backoff_ceiling(attempt, base_ms).as_millis() as u64;
    Duration::from_millis(if ceiling == 0 {
        0
    } else {
        rng.random_range(0..=ceiling)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn the_ceiling_doubles_with_each_attempt() {
        assert_eq!(backoff_ceiling(1, 500), Duration::from_millis(500));
        assert_eq!(backoff_ceiling(2, 500), Duration::from_millis(1000));
        assert_eq!(backoff_ceiling(3, 500), Duration::from_millis(2000));
    }

    #[test]
    fn the_ceiling_is_capped_however_many_attempts() {
        assert_eq!(backoff_ceiling(u32::MAX, u64::MAX), MAX_BACKOFF);
    }

    #[test]
    fn full_jitter_spreads_delays_over_the_whole_range() {
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<u128> = (0..2_000)
            .map(|_| backoff_delay(3, 500, &mut rng).as_millis())
            .collect();
        let low = delays.iter().filter(|d| **d < 1000).count();
        // Uniform over 0..=2000 ms: about half below 1000 ms (tolerance 5 points).
        assert!(
            (900..=1100).contains(&low),
            "{low} of 2000 below the midpoint"
        );
    }

    proptest! {
        #[test]
        fn a_delay_never_exceeds_its_ceiling(attempt in 1u32..40, base in 0u64..10_000, seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            prop_assert!(backoff_delay(attempt, base, &mut rng) <= backoff_ceiling(attempt, base));
        }
    }
}
