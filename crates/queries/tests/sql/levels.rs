//! The generated level column against the domain's `Level::from_score`, through
//! [`friendship_queries::friendship::APPLY_CHANGES`] and read back as the components read
//! it (`friendship_score::float8`): a client must never see a score and a level that
//! disagree.

use friendship_domain::{Level, ACQUAINTANCE_MIN_SCORE, FRIEND_MIN_SCORE};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::{apply, ensure_user, transitions, with_migrated_db, Change, ChangeExt};

/// The doubles on either side of each boundary, and other edges.
fn edge_scores() -> Vec<f64> {
    let mut scores = vec![0.0, 0.001, 99.999, 100.001, 499.999, 500.001, 1e9, 2.5e9];
    for boundary in [ACQUAINTANCE_MIN_SCORE, FRIEND_MIN_SCORE] {
        scores.extend([boundary, boundary.next_down(), boundary.next_up()]);
        scores.extend([boundary - 1e-9, boundary - 1e-12, boundary + 1e-12]);
    }
    scores
}

/// Asserts that a score and a level read together agree with the domain rule.
fn assert_agrees(score: f64, level: &str, context: &str) {
    assert_eq!(
        level,
        Level::from_score(score).as_str(),
        "score {score} ({context})"
    );
}

#[test]
fn the_generated_level_agrees_with_level_from_score_over_two_thousand_scores() {
    with_migrated_db(|db| async move {
        let mut rng = StdRng::seed_from_u64(2_000);
        let edges = edge_scores();
        let random = (0..2_000 - edges.len())
            .map(|_| f64::from(rng.random_range(0..1_000_000u32)) / 1_000.0);
        let scores: Vec<f64> = edges.iter().copied().chain(random).collect();
        assert_eq!(scores.len(), 2_000);

        let mut tx = db.pool.begin().await.unwrap();
        for (i, score) in scores.iter().enumerate() {
            let user = format!("user-{i}");
            ensure_user(&mut *tx, &user).await;
            let changed = apply(&mut *tx, &Change::service(&user, *score)).await;
            let read = changed.status.friendship_score;
            assert_agrees(
                read,
                &changed.status.friendship_level,
                &format!("sent {score}"),
            );
            if i >= edges.len() {
                assert_eq!(read, *score, "a score of three decimals round-trips");
            }
            assert!((read - score).abs() <= 1e-9, "sent {score}, read {read}");
        }
        tx.commit().await.unwrap();
    });
}

#[test]
fn a_random_walk_of_changes_keeps_score_and_level_in_step_and_records_each_transition() {
    with_migrated_db(|db| async move {
        let mut rng = StdRng::seed_from_u64(7);
        let mut tx = db.pool.begin().await.unwrap();
        ensure_user(&mut *tx, "user-1").await;
        let mut level = "stranger".to_owned();
        let mut expected_transitions = Vec::new();
        for step in 0..1_000 {
            let change = f64::from(rng.random_range(-30_000..=32_000)) / 100.0;
            let changed = apply(&mut *tx, &Change::service("user-1", change)).await;
            let s = &changed.status;
            assert_agrees(
                s.friendship_score,
                &s.friendship_level,
                &format!("step {step}"),
            );
            assert!(s.friendship_score >= 0.0);
            assert_eq!(changed.previous_level, level, "step {step}");
            if s.friendship_level != level {
                expected_transitions.push((
                    level.clone(),
                    s.friendship_level.clone(),
                    s.friendship_score,
                ));
                level.clone_from(&s.friendship_level);
            }
        }
        let recorded: Vec<_> = transitions(&mut *tx, "user-1")
            .await
            .into_iter()
            .map(|t| (t.from_level, t.to_level, t.score))
            .collect();
        assert!(
            recorded.len() > 10,
            "the walk crosses levels often: {}",
            recorded.len()
        );
        assert_eq!(recorded, expected_transitions);
    });
}

#[test]
fn a_score_a_hair_below_a_boundary_reads_back_on_the_same_side_as_its_level() {
    with_migrated_db(|db| async move {
        // Each pair of changes is exact in NUMERIC and sums to just under the boundary,
        // closer than a double can tell apart from it.
        for (user, first, second) in [
            ("user-500", 499.999_999_999_999, 9.9e-13),
            ("user-100", 99.999_999_999_999_9, 9.9e-14),
        ] {
            ensure_user(&db.pool, user).await;
            apply(&db.pool, &Change::service(user, first)).await;
            let changed = apply(&db.pool, &Change::service(user, second)).await;
            let s = &changed.status;
            assert_agrees(s.friendship_score, &s.friendship_level, user);
            let transitions = transitions(&db.pool, user).await;
            let last = transitions.last().map(|t| (t.to_level.as_str(), t.score));
            if let Some((to, score)) = last {
                assert_agrees(score, to, "the recorded transition");
            }
        }
    });
}
