//! Bearer-token authentication: HS256 JWTs (jsonwebtoken, constant-time
//! signature check), `exp` required with at most 60 s of leeway and at most
//! `max_token_lifetime_seconds` ahead, every missing claim named, and the
//! role and subject rules of docs/http-contract.md. A request repeating
//! `Authorization` never gets here (`Ctx::authorization`).

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config;
use crate::error::ApiError;

/// Seconds of clock skew tolerated on `exp`.
pub const LEEWAY_SECONDS: u64 = 60;

/// Who may call what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An end user, acting on their own data only.
    User,
    /// The AI scoring service.
    Service,
    /// An operator.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Service => "service",
            Role::Admin => "admin",
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
}

impl Principal {
    /// Refuses (403) a user acting on another user's data.
    pub fn may_act_for(&self, user_id: &str) -> Result<(), ApiError> {
        if self.role == Role::User && self.subject != user_id {
            return Err(ApiError::Forbidden(
                "a user may act on their own data only".into(),
            ));
        }
        Ok(())
    }
}

/// The claims read; each optional here so that a missing one is named
/// (jsonwebtoken would otherwise fail the whole decoding as malformed).
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    role: Option<String>,
    exp: Option<u64>,
}

/// The token of an `Authorization: Bearer <token>` header (or `bearer`); a
/// 401 when the header is missing or has another form.
pub fn bearer_token(header: Option<&str>) -> Result<&str, ApiError> {
    let header =
        header.ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
        })
}

/// Checks an `Authorization` header against the `jwt_secret` and
/// `max_token_lifetime_seconds` variables.
pub fn authenticate(header: Option<&str>) -> Result<Principal, ApiError> {
    let token = bearer_token(header)?;
    let secret = config::text("jwt_secret")?;
    let max_lifetime = config::number("max_token_lifetime_seconds")?;
    verify(token, secret.as_bytes(), max_lifetime)
}

/// Verifies a token with a secret; its `exp` may lie at most `max_lifetime`
/// seconds ahead (plus the leeway): a stolen token must not outlive it.
pub fn verify(token: &str, secret: &[u8], max_lifetime: u64) -> Result<Principal, ApiError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_exp = true;
    validation.set_required_spec_claims(&["exp"]);
    let data =
        decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::InvalidSignature => "the token's signature is invalid",
                ErrorKind::InvalidAlgorithm => "the token must be signed with HS256",
                ErrorKind::MissingRequiredClaim(claim) => {
                    return ApiError::Unauthorized(format!(
                        "the token lacks the required claim {claim}"
                    ))
                }
                _ => "the token is malformed",
            };
            ApiError::Unauthorized(why.into())
        })?;
    let missing =
        |claim: &str| ApiError::Unauthorized(format!("the token lacks the required claim {claim}"));
    let claims = data.claims;
    let exp = claims.exp.ok_or_else(|| missing("exp"))?;
    let sub = claims.sub.ok_or_else(|| missing("sub"))?;
    let role = claims.role.ok_or_else(|| missing("role"))?;
    let latest = jsonwebtoken::get_current_timestamp()
        .saturating_add(max_lifetime)
        .saturating_add(LEEWAY_SECONDS);
    if exp > latest {
        return Err(ApiError::Unauthorized(format!(
            "the token's exp lies more than {max_lifetime} seconds ahead (max_token_lifetime_seconds)"
        )));
    }
    let role = match role.as_str() {
        "user" => Role::User,
        "service" => Role::Service,
        "admin" => Role::Admin,
        _ => {
            return Err(ApiError::Forbidden(
                "the token's role may not use this service".into(),
            ))
        }
    };
    if sub.is_empty() {
        return Err(ApiError::Unauthorized(
            "the token's subject is empty".into(),
        ));
    }
    Ok(Principal { subject: sub, role })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"test-secret";
    const DAY: u64 = 86_400;

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn token(claims: serde_json::Value, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn a_valid_token_names_its_subject_and_role() {
        let t = token(
            json!({"sub": "u-1", "role": "user", "exp": now() + 60}),
            SECRET,
        );
        let p = verify(&t, SECRET, DAY).unwrap();
        assert_eq!((p.subject.as_str(), p.role), ("u-1", Role::User));
    }

    #[test]
    fn an_expired_token_is_refused_beyond_the_leeway() {
        let t = token(
            json!({"sub": "u-1", "role": "user", "exp": now() - LEEWAY_SECONDS - 5}),
            SECRET,
        );
        assert!(matches!(
            verify(&t, SECRET, DAY),
            Err(ApiError::Unauthorized(_))
        ));
        let t = token(
            json!({"sub": "u-1", "role": "user", "exp": now() - 10}),
            SECRET,
        );
        assert!(verify(&t, SECRET, DAY).is_ok());
    }

    #[test]
    fn a_token_without_a_required_claim_is_told_which() {
        for (claims, claim) in [
            (json!({"role": "user", "exp": now() + 60}), "sub"),
            (json!({"sub": "u-1", "exp": now() + 60}), "role"),
            (json!({"sub": "u-1", "role": "user"}), "exp"),
        ] {
            match verify(&token(claims, SECRET), SECRET, DAY) {
                Err(ApiError::Unauthorized(message)) => assert_eq!(
                    message,
                    format!("the token lacks the required claim {claim}")
                ),
                other => panic!("{claim}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_token_living_longer_than_the_maximum_lifetime_is_refused() {
        let within = token(
            json!({"sub": "u-1", "role": "user", "exp": now() + DAY}),
            SECRET,
        );
        assert!(verify(&within, SECRET, DAY).is_ok());
        for exp in [now() + DAY + LEEWAY_SECONDS + 5, u64::MAX] {
            let t = token(json!({"sub": "u-1", "role": "admin", "exp": exp}), SECRET);
            match verify(&t, SECRET, DAY) {
                Err(ApiError::Unauthorized(message)) => {
                    assert!(message.contains("max_token_lifetime_seconds"), "{message}")
                }
                other => panic!("{exp}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_token_signed_with_another_secret_is_unauthorized() {
        let t = token(
            json!({"sub": "u-1", "role": "admin", "exp": now() + 60}),
            b"other",
        );
        assert!(matches!(
            verify(&t, SECRET, DAY),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn an_unknown_role_is_forbidden() {
        let t = token(
            json!({"sub": "u-1", "role": "root", "exp": now() + 60}),
            SECRET,
        );
        assert!(matches!(
            verify(&t, SECRET, DAY),
            Err(ApiError::Forbidden(_))
        ));
    }

    #[test]
    fn a_user_may_act_only_on_their_own_data() {
        let user = Principal {
            subject: "u-1".into(),
            role: Role::User,
        };
        assert!(user.may_act_for("u-1").is_ok());
        assert!(matches!(
            user.may_act_for("u-2"),
            Err(ApiError::Forbidden(_))
        ));
        let service = Principal {
            subject: "svc".into(),
            role: Role::Service,
        };
        assert!(service.may_act_for("u-2").is_ok());
    }
}
