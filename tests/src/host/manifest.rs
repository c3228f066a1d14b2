//! `spin.toml` (Spin manifest version 2), read into this host's own types.
//!
//! Only what running the app needs is modelled: the application, its
//! variables, HTTP and Redis triggers, and per component the Wasm source,
//! `allowed_outbound_hosts`, `key_value_stores`, `variables` and
//! `environment`. Other keys (`build`, `files`, `description`, …) are
//! accepted and ignored. Component sources must be local paths (relative to
//! the manifest's directory); registry/URL sources are rejected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::host::variables::Declared;

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse into a v2 manifest.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The manifest path.
        path: PathBuf,
        /// The TOML error.
        source: toml::de::Error,
    },
    /// The manifest parses but breaks a rule Spin enforces.
    #[error("invalid manifest: {0}")]
    Invalid(String),
}

/// A parsed `spin.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// Must be 2.
    pub spin_manifest_version: u32,
    /// `[application]`.
    pub application: Application,
    /// `[variables]`.
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    /// `[[trigger.http]]` and `[[trigger.redis]]`.
    #[serde(default)]
    pub trigger: Triggers,
    /// `[component.<id>]`.
    #[serde(default)]
    pub component: BTreeMap<String, ComponentDecl>,
    /// The directory component sources are relative to (set after parsing).
    #[serde(skip)]
    pub root: PathBuf,
}

/// `[application]`.
#[derive(Debug, Clone, Deserialize)]
pub struct Application {
    /// The application name.
    pub name: String,
    /// Its version, if given.
    #[serde(default)]
    pub version: Option<String>,
    /// Application-level trigger settings.
    #[serde(default)]
    pub trigger: ApplicationTriggers,
}

/// `[application.trigger.*]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApplicationTriggers {
    /// `[application.trigger.http]`.
    #[serde(default)]
    pub http: Option<ApplicationHttp>,
    /// `[application.trigger.redis]`.
    #[serde(default)]
    pub redis: Option<ApplicationRedis>,
}

/// `[application.trigger.http]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApplicationHttp {
    /// Deprecated base path; Spin 3 always uses `/`.
    #[serde(default)]
    pub base: Option<String>,
}

/// `[application.trigger.redis]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApplicationRedis {
    /// Default Redis address for every Redis trigger; a template.
    pub address: String,
}

/// One entry of `[variables]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    /// The default value.
    #[serde(default)]
    pub default: Option<String>,
    /// `required = true`: no default, a provider must supply it.
    #[serde(default)]
    pub required: bool,
    /// `secret = true`.
    #[serde(default)]
    pub secret: bool,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// `[[trigger.*]]` tables.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Triggers {
    /// `[[trigger.http]]`.
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
    /// `[[trigger.redis]]`.
    #[serde(default)]
    pub redis: Vec<RedisTrigger>,
}

/// One `[[trigger.http]]`.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpTrigger {
    /// `route = "/path"`, `"/prefix/..."`, or `{ private = true }`.
    pub route: HttpRoute,
    /// The component id.
    pub component: String,
    /// Optional `executor = { type = "http" }`; only `http` (the default) is
    /// supported.
    #[serde(default)]
    pub executor: Option<toml::Value>,
}

/// A `route` value.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HttpRoute {
    /// A routable pattern.
    Route(String),
    /// `{ private = true }`: not routable from outside.
    Private {
        /// Must be true.
        private: bool,
    },
}

/// One `[[trigger.redis]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTrigger {
    /// The channel (a template).
    pub channel: String,
    /// The component id.
    pub component: String,
    /// Overrides `[application.trigger.redis] address` (a template).
    #[serde(default)]
    pub address: Option<String>,
}

/// `[component.<id>]`.
#[derive(Debug, Clone, Deserialize)]
pub struct ComponentDecl {
    /// The Wasm file, relative to the manifest directory.
    pub source: ComponentSource,
    /// `allowed_outbound_hosts` (items may be templates).
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Key-value store labels the component may open.
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    /// Component variables: name → template over application variables.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Environment variables visible to the component through WASI.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

/// A component `source`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ComponentSource {
    /// A local path.
    Local(String),
    /// `{ url = …, digest = … }` or `{ registry = … }`: not supported here.
    Remote(toml::Table),
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn from_file(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let root = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::from_str_in(&text, root).map_err(|e| match e {
            ManifestError::Parse { source, .. } => ManifestError::Parse {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates manifest text; `root` is the directory component
    /// sources are relative to.
    pub fn from_str_in(text: &str, root: PathBuf) -> Result<Self, ManifestError> {
        let mut manifest: Manifest =
            toml::from_str(text).map_err(|source| ManifestError::Parse {
                path: PathBuf::from("spin.toml"),
                source,
            })?;
        manifest.root = root;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |m: String| Err(ManifestError::Invalid(m));
        if self.spin_manifest_version != 2 {
            return invalid(format!(
                "spin_manifest_version {} is not supported (only 2)",
                self.spin_manifest_version
            ));
        }
        for (name, decl) in &self.variables {
            crate::host::variables::validate_name(name)
                .map_err(|e| ManifestError::Invalid(e.to_string()))?;
            if decl.required == decl.default.is_some() {
                return invalid(format!(
                    "variable {name:?} must have either a default or required = true (not both)"
                ));
            }
        }
        for t in &self.trigger.http {
            if !self.component.contains_key(&t.component) {
                return invalid(format!(
                    "HTTP trigger names unknown component {:?}",
                    t.component
                ));
            }
            if let HttpRoute::Private { private: false } = t.route {
                return invalid(format!(
                    "route must be a string pattern or '{{ private = true }}': '{}' has {{ private = false }}",
                    t.component
                ));
            }
            if let Some(exec) = &t.executor {
                let kind = exec.get("type").and_then(|v| v.as_str()).unwrap_or("http");
                if kind != "http" {
                    return invalid(format!(
                        "executor type {kind:?} is not supported by this host"
                    ));
                }
            }
        }
        for t in &self.trigger.redis {
            if !self.component.contains_key(&t.component) {
                return invalid(format!(
                    "Redis trigger names unknown component {:?}",
                    t.component
                ));
            }
            if t.address.is_none() && self.application.trigger.redis.is_none() {
                return invalid(format!(
                    "Redis trigger for {:?} has no address and [application.trigger.redis] sets none",
                    t.component
                ));
            }
        }
        for (id, c) in &self.component {
            if let ComponentSource::Remote(_) = c.source {
                return invalid(format!(
                    "component {id:?}: only local file sources are supported"
                ));
            }
        }
        Ok(())
    }

    /// The application variable declarations, for the resolver.
    pub fn declared_variables(&self) -> BTreeMap<String, Declared> {
        self.variables
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Declared {
                        default: v.default.clone(),
                        secret: v.secret,
                    },
                )
            })
            .collect()
    }

    /// The absolute-or-root-relative Wasm path of a component.
    pub fn component_path(&self, id: &str) -> Option<PathBuf> {
        match &self.component.get(id)?.source {
            ComponentSource::Local(p) => Some(self.root.join(p)),
            ComponentSource::Remote(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
spin_manifest_version = 2

[application]
name = "friendship"
version = "0.1.0"

[application.trigger.redis]
address = "{{ redis_url }}"

[variables]
db_url = { required = true }
jwt_secret = { required = true, secret = true }
events_channel = { default = "conversation-events" }

[[trigger.http]]
route = "/api/v1/conversations/..."
component = "conversations"

[[trigger.http]]
route = { private = true }
component = "scorer"

[[trigger.redis]]
channel = "{{ events_channel }}"
component = "scorer"

[component.conversations]
source = "target/wasm32-wasip2/release/conversations.wasm"
allowed_outbound_hosts = ["postgres://127.0.0.1:5432", "redis://{{ redis_host }}"]
key_value_stores = ["default"]
[component.conversations.variables]
db_url = "{{ db_url }}"
[component.conversations.build]
command = "cargo build --target wasm32-wasip2 --release"

[component.scorer]
source = "target/wasm32-wasip2/release/scorer.wasm"
"#;

    #[test]
    fn a_v2_manifest_with_triggers_variables_and_components_parses() {
        let m = Manifest::from_str_in(SAMPLE, PathBuf::from("/app")).unwrap();
        assert_eq!(m.application.name, "friendship");
        assert_eq!(m.trigger.http.len(), 2);
        assert_eq!(m.trigger.redis[0].channel, "{{ events_channel }}");
        assert_eq!(
            m.application.trigger.redis.as_ref().unwrap().address,
            "{{ redis_url }}"
        );
        let c = &m.component["conversations"];
        assert_eq!(c.key_value_stores, vec!["default"]);
        assert_eq!(c.variables["db_url"], "{{ db_url }}");
        assert!(m.variables["jwt_secret"].secret);
        assert_eq!(
            m.component_path("scorer").unwrap(),
            PathBuf::from("/app/target/wasm32-wasip2/release/scorer.wasm")
        );
        assert!(matches!(
            m.trigger.http[1].route,
            HttpRoute::Private { private: true }
        ));
    }

    #[test]
    fn a_variable_with_both_default_and_required_is_rejected() {
        let text = SAMPLE.replace(
            "db_url = { required = true }",
            "db_url = { required = true, default = \"x\" }",
        );
        assert!(matches!(
            Manifest::from_str_in(&text, PathBuf::new()),
            Err(ManifestError::Invalid(_))
        ));
    }

    #[test]
    fn a_trigger_naming_an_unknown_component_is_rejected() {
        let text = SAMPLE.replace("component = \"conversations\"", "component = \"nope\"");
        assert!(matches!(
            Manifest::from_str_in(&text, PathBuf::new()),
            Err(ManifestError::Invalid(_))
        ));
    }

    #[test]
    fn manifest_version_one_is_rejected() {
        let text = SAMPLE.replace("spin_manifest_version = 2", "spin_manifest_version = 1");
        assert!(Manifest::from_str_in(&text, PathBuf::new()).is_err());
    }
}
