//! Spin variables: templates, names, the provider chain, and the
//! `fermyon:spin/variables` / `wasi:config/store` host interfaces.
//!
//! Spin's model (checked in spinframework/spin `crates/expressions`,
//! `crates/variables-env`, `crates/factor-variables`):
//! - Application variables are declared in `[variables]` with either a
//!   `default` or `required = true`. Their values come from providers: here an
//!   explicit map (what `spin up --variable k=v` gives), then the environment
//!   (`SPIN_VARIABLE_<UPPER_NAME>`), then the declared default.
//! - Component variables (`[component.x.variables]`) are templates over
//!   application variables (`"{{ db_url }}"`, literal text allowed around
//!   expressions). A component can read only its own component variables.
//! - `get(name)` with a malformed name is `invalid-name`; a name the component
//!   does not declare is `undefined("no variable for \"comp\".\"name\"")`.
//!
//! Difference from Spin: values are resolved once, when the app loads (Spin
//! asks its providers on every `get`). A required variable no provider has is
//! an error at load in both.

use std::collections::{BTreeMap, HashMap};

use crate::host::bindings::fermyon::spin2_0_0::variables as wit;
use crate::host::bindings::wasi::config::store as wit_config;
use crate::host::InstanceState;

/// The environment variable prefix Spin's env provider uses.
pub const ENV_PREFIX: &str = "SPIN_VARIABLE";

/// Why a variable could not be resolved or a template is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    /// The name breaks Spin's rules (lower-case ASCII letters, digits, single
    /// underscores; starts with a letter, ends with a letter or digit).
    #[error("invalid variable name {0}")]
    InvalidName(String),
    /// A template is malformed or names an undeclared application variable.
    #[error("invalid template: {0}")]
    InvalidTemplate(String),
    /// The component (or application) has no such variable.
    #[error("undefined variable: {0}")]
    Undefined(String),
    /// A required variable has no value from any provider.
    #[error("{0}")]
    Provider(String),
}

/// Checks a variable name the way Spin's `spin_expressions::Key` does.
pub fn validate_name(key: &str) -> Result<(), VariableError> {
    let reason = if key.is_empty() {
        Some("must not be empty".to_string())
    } else if let Some(invalid) = key
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        Some(format!(
            "invalid character {invalid:?}. Variable names may contain only lower-case letters, numbers, and underscores."
        ))
    } else if !key.as_bytes()[0].is_ascii_lowercase() {
        Some("must start with a lowercase ASCII letter".to_string())
    } else if !key.as_bytes()[key.len() - 1].is_ascii_alphanumeric() {
        Some("must end with a lowercase ASCII letter or digit".to_string())
    } else if key.contains("__") {
        Some("must not contain multiple consecutive underscores".to_string())
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(VariableError::InvalidName(format!("{key:?}: {reason}"))),
    }
}

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text, copied as is.
    Lit(String),
    /// `{{ name }}`: the value of an application variable (name trimmed).
    Expr(String),
}

/// A Spin template string: literal text with `{{ variable }}` expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses a template the way Spin does: `{{` opens an expression that runs
    /// to the next `}}`; an unmatched `{{` is an error; there is no escaping.
    pub fn parse(template: &str) -> Result<Self, VariableError> {
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            if let Some(expr_rest) = rest.strip_prefix("{{") {
                let (expr, after) = expr_rest.split_once("}}").ok_or_else(|| {
                    VariableError::InvalidTemplate("unmatched '{{' in template".to_string())
                })?;
                parts.push(Part::Expr(expr.trim().to_string()));
                rest = after;
            } else if let Some(idx) = rest.find("{{") {
                parts.push(Part::Lit(rest[..idx].to_string()));
                rest = &rest[idx..];
            } else {
                parts.push(Part::Lit(rest.to_string()));
                rest = "";
            }
        }
        Ok(Self { parts })
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// True when the template has no expression.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// Substitutes every expression with `lookup(name)`.
    pub fn render(
        &self,
        lookup: impl Fn(&str) -> Result<String, VariableError>,
    ) -> Result<String, VariableError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(lit) => out.push_str(lit),
                Part::Expr(name) => out.push_str(&lookup(name)?),
            }
        }
        Ok(out)
    }
}

/// An application variable as declared in `[variables]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The default value; `None` means the variable is required.
    pub default: Option<String>,
    /// Marked `secret = true` (never printed by this host).
    pub secret: bool,
}

/// Where application variable values come from, highest priority first:
/// the explicit map, then `SPIN_VARIABLE_<NAME>` in the environment (if
/// enabled), then the declared default.
#[derive(Debug, Clone, Default)]
pub struct Provider {
    /// Values given explicitly (a test's map, or `--variable k=v`).
    pub explicit: HashMap<String, String>,
    /// Whether to read `SPIN_VARIABLE_<UPPER_NAME>` from the environment.
    pub use_env: bool,
}

impl Provider {
    fn lookup(&self, name: &str) -> Option<String> {
        if let Some(v) = self.explicit.get(name) {
            return Some(v.clone());
        }
        if self.use_env {
            let key = format!("{ENV_PREFIX}_{}", name.to_ascii_uppercase());
            if let Ok(v) = std::env::var(key) {
                return Some(v);
            }
        }
        None
    }
}

/// Resolved application variables: every declared name with its value.
#[derive(Debug, Clone, Default)]
pub struct AppVariables {
    values: BTreeMap<String, String>,
}

impl AppVariables {
    /// Resolves every declared variable through `provider`. A required
    /// variable without a value is a [`VariableError::Provider`] error, as in
    /// Spin ("no provider resolved required variable").
    pub fn resolve(
        declared: &BTreeMap<String, Declared>,
        provider: &Provider,
    ) -> Result<Self, VariableError> {
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, decl) in declared {
            validate_name(name)?;
            match provider.lookup(name).or_else(|| decl.default.clone()) {
                Some(v) => {
                    values.insert(name.clone(), v);
                }
                None => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(VariableError::Provider(format!(
                "no provider resolved required variable(s): {missing:?} (set them with \
                 --variable name=value or {ENV_PREFIX}_<NAME>)"
            )));
        }
        Ok(Self { values })
    }

    /// The value of an application variable.
    pub fn get(&self, name: &str) -> Result<String, VariableError> {
        self.values
            .get(name)
            .cloned()
            .ok_or_else(|| VariableError::InvalidTemplate(format!("unknown variable {name:?}")))
    }

    /// Renders a template over the application variables.
    pub fn render(&self, template: &str) -> Result<String, VariableError> {
        Template::parse(template)?.render(|name| self.get(name))
    }
}

/// One component's variables, rendered from its templates.
#[derive(Debug, Clone, Default)]
pub struct ComponentVariables {
    component_id: String,
    values: BTreeMap<String, String>,
}

impl ComponentVariables {
    /// Renders `[component.<id>.variables]` over the application variables.
    /// A template naming an undeclared application variable is an error here,
    /// as it is when Spin loads the app.
    pub fn render(
        component_id: &str,
        templates: &BTreeMap<String, String>,
        app: &AppVariables,
    ) -> Result<Self, VariableError> {
        let mut values = BTreeMap::new();
        for (key, template) in templates {
            validate_name(key)?;
            values.insert(key.clone(), app.render(template)?);
        }
        Ok(Self {
            component_id: component_id.to_string(),
            values,
        })
    }

    /// What `fermyon:spin/variables.get` returns.
    pub fn get(&self, key: &str) -> Result<String, VariableError> {
        validate_name(key)?;
        self.values.get(key).cloned().ok_or_else(|| {
            VariableError::Undefined(format!("no variable for {:?}.{key:?}", self.component_id))
        })
    }

    /// Every (name, value) pair, for `wasi:config/store.get-all`.
    pub fn all(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl From<VariableError> for wit::Error {
    fn from(err: VariableError) -> Self {
        match err {
            VariableError::InvalidName(m) => wit::Error::InvalidName(m),
            VariableError::Undefined(m) => wit::Error::Undefined(m),
            VariableError::Provider(m) => wit::Error::Provider(m),
            other @ VariableError::InvalidTemplate(_) => wit::Error::Other(other.to_string()),
        }
    }
}

impl wit::Host for InstanceState {
    async fn get(&mut self, name: String) -> Result<String, wit::Error> {
        self.component.variables.get(&name).map_err(Into::into)
    }
}

impl wit_config::Host for InstanceState {
    /// As in Spin: an undefined or malformed name is `Ok(None)`.
    async fn get(&mut self, key: String) -> Result<Option<String>, wit_config::Error> {
        match self.component.variables.get(&key) {
            Ok(v) => Ok(Some(v)),
            Err(VariableError::Undefined(_) | VariableError::InvalidName(_)) => Ok(None),
            Err(VariableError::Provider(m)) => Err(wit_config::Error::Upstream(m)),
            Err(other) => Err(wit_config::Error::Io(other.to_string())),
        }
    }

    async fn get_all(&mut self) -> Result<Vec<(String, String)>, wit_config::Error> {
        Ok(self.component.variables.all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Declared> {
        pairs
            .iter()
            .map(|(k, d)| {
                (
                    k.to_string(),
                    Declared {
                        default: d.map(str::to_string),
                        secret: false,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn templates_split_into_literals_and_trimmed_expressions() {
        let t = Template::parse("a-{{ x }}-{{y}}").unwrap();
        assert_eq!(
            t.parts(),
            &[
                Part::Lit("a-".into()),
                Part::Expr("x".into()),
                Part::Lit("-".into()),
                Part::Expr("y".into())
            ]
        );
        assert!(Template::parse("plain").unwrap().is_literal());
    }

    #[test]
    fn an_unmatched_opening_brace_pair_is_an_invalid_template() {
        assert!(matches!(
            Template::parse("x{{ y"),
            Err(VariableError::InvalidTemplate(_))
        ));
    }

    #[test]
    fn names_follow_spins_rules() {
        for ok in ["db_url", "a", "a1", "events_channel"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "DB_URL", "1a", "a_", "a__b", "a-b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn explicit_values_beat_the_environment_which_beats_defaults() {
        let decl = declared(&[
            ("zz_host_test_a", Some("default")),
            ("zz_host_test_b", Some("default")),
        ]);
        std::env::set_var("SPIN_VARIABLE_ZZ_HOST_TEST_A", "from-env");
        std::env::set_var("SPIN_VARIABLE_ZZ_HOST_TEST_B", "from-env");
        let provider = Provider {
            explicit: HashMap::from([("zz_host_test_a".to_string(), "explicit".to_string())]),
            use_env: true,
        };
        let vars = AppVariables::resolve(&decl, &provider).unwrap();
        assert_eq!(vars.get("zz_host_test_a").unwrap(), "explicit");
        assert_eq!(vars.get("zz_host_test_b").unwrap(), "from-env");
        let no_env = Provider::default();
        let vars = AppVariables::resolve(&decl, &no_env).unwrap();
        assert_eq!(vars.get("zz_host_test_b").unwrap(), "default");
    }

    #[test]
    fn a_required_variable_without_a_value_fails_the_load() {
        let decl = declared(&[("needed", None)]);
        let err = AppVariables::resolve(&decl, &Provider::default()).unwrap_err();
        assert!(
            matches!(err, VariableError::Provider(ref m) if m.contains("needed")),
            "{err}"
        );
    }

    #[test]
    fn component_variables_are_templates_over_app_variables() {
        let decl = declared(&[("host", Some("db")), ("port", Some("5432"))]);
        let app = AppVariables::resolve(&decl, &Provider::default()).unwrap();
        let templates = BTreeMap::from([(
            "db_url".to_string(),
            "postgres://{{ host }}:{{port}}/x".to_string(),
        )]);
        let comp = ComponentVariables::render("c", &templates, &app).unwrap();
        assert_eq!(comp.get("db_url").unwrap(), "postgres://db:5432/x");
        assert_eq!(
            comp.get("host").unwrap_err(),
            VariableError::Undefined("no variable for \"c\".\"host\"".into())
        );
        assert!(matches!(
            comp.get("Bad"),
            Err(VariableError::InvalidName(_))
        ));
    }

    #[test]
    fn a_component_template_naming_an_undeclared_variable_fails() {
        let app = AppVariables::resolve(&BTreeMap::new(), &Provider::default()).unwrap();
        let templates = BTreeMap::from([("x".to_string(), "{{ nope }}".to_string())]);
        assert!(ComponentVariables::render("c", &templates, &app).is_err());
    }
}
