//! The candidate cache: a miss then hits; never stale after a level or a
//! catalogue change; the request's context honoured on a hit; counts
//! exposed; never more records than `cache_slots`.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use crate::support::{isolated, isolated_after, run, shared, user};

fn agent_ids(resp: &Value) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    if let Some(g) = resp["greeting_agent"]["agent_id"].as_str() {
        ids.push(g.to_string());
    }
    for list in ["talk_agents", "game_agents"] {
        for agent in resp[list].as_array().unwrap() {
            ids.push(agent["agent_id"].as_str().unwrap().to_string());
        }
    }
    ids
}

#[test]
fn the_first_suggestion_is_a_miss_and_the_next_ones_are_hits() {
    run(async {
        // An environment of its own: the counters live in its Redis, where
        // no other test's suggestions add to them.
        let env = isolated().await;
        let u = user("cache");
        let token = env.token(&u, "user");
        let before = env.cache_stats().await;
        before.expect(200);
        assert_eq!(
            before.json,
            json!({ "hits": 0, "misses": 0, "hit_rate": 0.0 })
        );
        let first = env.suggest(&token, &u, None).await;
        first.expect(200);
        assert_eq!(first.json["cached"], false);
        for _ in 0..3 {
            let hit = env.suggest(&token, &u, None).await;
            hit.expect(200);
            assert_eq!(hit.json["cached"], true);
            assert_eq!(hit.json["friendship_level"], "stranger");
        }
        // Every suggestion is counted (`cache_count_every` is 1 here): one
        // miss, then three hits, so 3 / 4.
        let after = env.cache_stats().await;
        after.expect(200);
        assert_eq!(
            after.json,
            json!({ "hits": 3, "misses": 1, "hit_rate": 0.75 })
        );
        env.shutdown().await;
    });
}

#[test]
fn an_unknown_user_is_served_as_a_stranger_and_not_created() {
    run(async {
        let env = shared().await;
        let u = user("ghost");
        let token = env.token(&u, "user");
        let resp = env.suggest(&token, &u, None).await;
        resp.expect(200);
        assert_eq!(resp.json["friendship_level"], "stranger");
        assert_eq!(resp.json["talk_agents"].as_array().unwrap().len(), 2);
        assert_eq!(resp.json["game_agents"].as_array().unwrap().len(), 2);
        assert!(resp.json["greeting_agent"]["reason"].is_string());
        env.status(&token, &u).await.expect_error(404, "not_found");
    });
}

#[test]
fn the_context_is_honoured_on_a_cache_hit() {
    run(async {
        let env = shared().await;
        let u = user("ctx");
        let token = env.token(&u, "user");
        env.suggest(&token, &u, None).await.expect(200);
        let birthday = env
            .suggest(
                &token,
                &u,
                Some(json!({ "is_birthday": true, "emotion": "sad" })),
            )
            .await;
        birthday.expect(200);
        assert_eq!(birthday.json["cached"], true);
        let greeting = &birthday.json["greeting_agent"];
        assert!(
            greeting["agent_id"].as_str().unwrap().contains("birthday"),
            "{greeting}"
        );
        let sad = env
            .suggest(&token, &u, Some(json!({ "emotion": "sad" })))
            .await;
        assert_eq!(sad.json["cached"], true);
        assert!(
            sad.json["greeting_agent"]["agent_id"]
                .as_str()
                .unwrap()
                .contains("emotion"),
            "{}",
            sad.text
        );
        let memory = env
            .suggest(&token, &u, Some(json!({ "memory_recall": true })))
            .await;
        assert!(
            memory.json["greeting_agent"]["agent_id"]
                .as_str()
                .unwrap()
                .contains("memory"),
            "{}",
            memory.text
        );
    });
}

#[test]
fn a_catalogue_change_makes_cached_candidates_unusable_and_inactive_agents_are_never_suggested() {
    run(async {
        let env = isolated().await;
        let u = user("catalogue");
        let token = env.token(&u, "user");
        env.suggest(&token, &u, None).await.expect(200);
        assert_eq!(env.suggest(&token, &u, None).await.json["cached"], true);

        // A heavy game agent at the stranger level: once it exists, it is
        // suggested (weight 1000 against seed weights of 1 to 2).
        let agent_id = format!("game-heavy-{}", &u[u.len() - 8..]);
        let created = env
            .create_mapping(&json!({
                "friendship_level": "stranger", "agent_type": "game", "agent_id": agent_id,
                "agent_name": "Heavy game", "agent_description": "test agent", "weight": 1000
            }))
            .await;
        created.expect(201);
        let id = created.json["id"].as_i64().unwrap();

        let after_create = env.suggest(&token, &u, None).await;
        assert_eq!(
            after_create.json["cached"], false,
            "a catalogue change is a miss"
        );
        let mut seen = false;
        for _ in 0..10 {
            seen |= agent_ids(&env.suggest(&token, &u, None).await.json).contains(&agent_id);
        }
        assert!(seen, "the new heavy agent is suggested");

        let admin = env.token("ops", "admin");
        let deleted = env
            .call(
                "DELETE",
                &format!("/api/v1/agent-mappings/{id}"),
                Some(&admin),
                None,
            )
            .await;
        deleted.expect(200);
        assert_eq!(deleted.json["is_active"], false);
        for _ in 0..20 {
            let resp = env.suggest(&token, &u, None).await;
            resp.expect(200);
            assert!(
                !agent_ids(&resp.json).contains(&agent_id),
                "an inactive agent was suggested: {}",
                resp.text
            );
        }
    });
}

#[test]
fn a_wrong_catalogue_version_in_key_value_is_repaired_by_the_next_miss() {
    run(async {
        // Its own Redis: a wrong version makes every other user's record a miss.
        let env = isolated().await;
        let u = user("version");
        let token = env.token(&u, "user");
        env.suggest(&token, &u, None).await.expect(200);
        assert_eq!(env.suggest(&token, &u, None).await.json["cached"], true);

        // A lost publish, or a Redis restored from elsewhere or shared by two
        // deployments: key-value disagrees with Postgres.
        let kv = redis::Client::open(format!("{}/1", env.redis_url)).unwrap();
        let mut kv = kv.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("SET")
            .arg("catalogue:version")
            .arg("151")
            .query_async(&mut kv)
            .await
            .unwrap();

        let repaired = env.suggest(&token, &u, None).await;
        repaired.expect(200);
        assert_eq!(repaired.json["cached"], false, "no record is usable");
        let truth: i64 = sqlx::query_scalar("SELECT version FROM catalogue_version")
            .fetch_one(&env.db)
            .await
            .unwrap();
        let published: String = redis::cmd("GET")
            .arg("catalogue:version")
            .query_async(&mut kv)
            .await
            .unwrap();
        assert_eq!(
            published,
            truth.to_string(),
            "the miss published Postgres's version"
        );
        for _ in 0..3 {
            assert_eq!(
                env.suggest(&token, &u, None).await.json["cached"],
                true,
                "the hit rate recovers by itself"
            );
        }
        env.shutdown().await;
    });
}

#[test]
fn the_cache_never_holds_more_records_than_its_slots_and_never_serves_another_users() {
    run(async {
        const SLOTS: usize = 4;
        const USERS: usize = 40;
        let extra = HashMap::from([("cache_slots".to_string(), SLOTS.to_string())]);
        let env = isolated_after(extra, |_| async {}).await;
        let service = env.token("cache-filler", "service");
        let users: Vec<String> = (0..USERS).map(|_| user("slots")).collect();
        // Every other user a friend, so that a record served to the wrong
        // user would show in the answer's level.
        let level_of = |n: usize| {
            if n.is_multiple_of(2) {
                "stranger"
            } else {
                "friend"
            }
        };
        for (n, u) in users.iter().enumerate() {
            if level_of(n) == "friend" {
                let body = json!({ "user_id": u, "friendship_score_change": 600 });
                env.update(&service, &body).await.expect(200);
            }
            let first = env.suggest(&service, u, None).await;
            first.expect(200);
            assert_eq!(
                first.json["cached"], false,
                "{u}: a first suggest is a miss"
            );
            // Right after its own miss, a user's record is in its slot.
            let again = env.suggest(&service, u, None).await;
            again.expect(200);
            assert_eq!(
                again.json["cached"], true,
                "{u} (#{n}): a hit right after its miss"
            );
            assert_eq!(
                again.json["friendship_level"],
                level_of(n),
                "{u}: its own record"
            );
        }

        let kv = redis::Client::open(format!("{}/1", env.redis_url)).unwrap();
        let mut kv = kv.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("candidates*")
            .query_async(&mut kv)
            .await
            .unwrap();
        assert!(
            !keys.is_empty() && keys.len() <= SLOTS,
            "{USERS} users suggested, {SLOTS} slots: the store holds {keys:?}"
        );
        // Each slot holds the record of the last user suggested in it.
        let mut holders = HashSet::new();
        for key in &keys {
            let record: String = redis::cmd("GET")
                .arg(key)
                .query_async(&mut kv)
                .await
                .unwrap();
            let record: Value = serde_json::from_str(&record).unwrap();
            let holder = record["user_id"].as_str().unwrap().to_string();
            assert!(users.contains(&holder), "{key} holds {holder}");
            holders.insert(holder);
        }

        // Every user is still answered as itself: a hit when its record is
        // still in its slot, a miss (never another user's record) otherwise.
        let mut hits = 0;
        for (n, u) in users.iter().enumerate() {
            let answer = env.suggest(&service, u, None).await;
            answer.expect(200);
            assert_eq!(
                answer.json["friendship_level"],
                level_of(n),
                "{u}: its own record"
            );
            if answer.json["cached"] == true {
                hits += 1;
                assert!(
                    holders.contains(u),
                    "{u}: a hit whose record had been evicted"
                );
            }
        }
        assert!(hits <= SLOTS, "at most one hit per slot in a round: {hits}");
        let after: Vec<String> = redis::cmd("KEYS")
            .arg("candidates*")
            .query_async(&mut kv)
            .await
            .unwrap();
        assert!(after.len() <= SLOTS, "still bounded: {after:?}");
        env.shutdown().await;
    });
}
