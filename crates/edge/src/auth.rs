//! Bearer-token authentication: HS256 JWTs (jsonwebtoken, constant-time
//! signature check), `exp` required with at most 60 s of leeway, and the role
//! and subject rules of docs/http-contract.md.

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

#[derive(Deserialize)]
struct Claims {
    sub: String,
    role: String,
    #[allow(dead_code)]
    exp: u64,
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

/// Checks an `Authorization` header against the `jwt_secret` variable.
pub fn authenticate(header: Option<&str>) -> Result<Principal, ApiError> {
    let token = bearer_token(header)?;
    let secret = config::text("jwt_secret")?;
    verify(token, secret.as_bytes())
}

/// Verifies a token with a secret.
pub fn verify(token: &str, secret: &[u8]) -> Result<Principal, ApiError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_exp = true;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data =
        decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::InvalidSignature => "the token's signature is invalid",
                ErrorKind::InvalidAlgorithm => "the token must be signed with HS256",
                ErrorKind::MissingRequiredClaim(_) => {
                    "the token lacks a required claim (sub, role, exp)"
                }
                _ => "the token is malformed",
            };
            ApiError::Unauthorized(why.into())
        })?;
    let role = match data.claims.role.as_str() {
        "user" => Role::User,
        "service" => Role::Service,
        "admin" => Role::Admin,
        _ => {
            return Err(ApiError::Forbidden(
                "the token's role may not use this service".into(),
            ))
        }
    };
    if data.claims.sub.is_empty() {
        return Err(ApiError::Unauthorized(
            "the token's subject is empty".into(),
        ));
    }
    Ok(Principal {
        subject: data.claims.sub,
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"test-secret";

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
        let p = verify(&t, SECRET).unwrap();
        assert_eq!((p.subject.as_str(), p.role), ("u-1", Role::User));
    }

    #[test]
    fn an_expired_token_is_refused_beyond_the_leeway() {
        let t = token(
            json!({"sub": "u-1", "role": "user", "exp": now() - LEEWAY_SECONDS - 5}),
            SECRET,
        );
        assert!(matches!(verify(&t, SECRET), Err(ApiError::Unauthorized(_))));
        let t = token(
            json!({"sub": "u-1", "role": "user", "exp": now() - 10}),
            SECRET,
        );
        assert!(verify(&t, SECRET).is_ok());
    }

    #[test]
    fn tokens_without_a_required_claim_are_unauthorized() {
        for claims in [
            json!({"role": "user", "exp": now() + 60}),
            json!({"sub": "u-1", "exp": now() + 60}),
            json!({"sub": "u-1", "role": "user"}),
        ] {
            assert!(matches!(
                verify(&token(claims, SECRET), SECRET),
                Err(ApiError::Unauthorized(_))
            ));
        }
    }

    #[test]
    fn a_token_signed_with_another_secret_is_unauthorized() {
        let t = token(
            json!({"sub": "u-1", "role": "admin", "exp": now() + 60}),
            b"other",
        );
        assert!(matches!(verify(&t, SECRET), Err(ApiError::Unauthorized(_))));
    }

    #[test]
    fn an_unknown_role_is_forbidden() {
        let t = token(
            json!({"sub": "u-1", "role": "root", "exp": now() + 60}),
            SECRET,
        );
        assert!(matches!(verify(&t, SECRET), Err(ApiError::Forbidden(_))));
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
