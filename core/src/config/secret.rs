//! A config value that may live inline, in an environment variable or in a file, so that
//! secrets need not be written into the TOML.

use std::fmt;

use serde::Deserialize;

use super::ConfigError;

#[derive(Clone, Deserialize)]
#[serde(untagged)]
enum Source {
    Inline(String),
    Env { env: String },
    File { file: std::path::PathBuf },
}

/// After [`Secret::resolve`], holds the value itself whatever its source.
#[derive(Clone, Deserialize)]
#[serde(from = "Source")]
pub struct Secret {
    source: Source,
    value: String,
}

impl From<Source> for Secret {
    fn from(source: Source) -> Self {
        let value = match &source {
            Source::Inline(value) => value.clone(),
            Source::Env { .. } | Source::File { .. } => String::new(),
        };
        Self { source, value }
    }
}

impl Default for Secret {
    fn default() -> Self {
        Source::Inline(String::new()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.value.is_empty() {
            "Secret(empty)"
        } else {
            "Secret(***)"
        })
    }
}

impl Secret {
    pub fn value(&self) -> &str {
        &self.value
    }

    pub(super) fn resolve(&mut self, key: &str) -> Result<(), ConfigError> {
        self.value = match &self.source {
            Source::Inline(value) => value.clone(),
            Source::Env { env } => std::env::var(env).map_err(|_| {
                ConfigError::new(key, format!("environment variable {env} is not set"))
            })?,
            Source::File { file } => std::fs::read_to_string(file)
                .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", file.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn secrets_come_from_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        // SAFETY: the variable name is unique to this test; no other thread reads it.
        unsafe { std::env::set_var("TESSERA_TEST_SECRET_A", "from-env") };
        let config = Config::parse(&format!(
            "server_name = \"a.org\"\n[registration]\nshared_secret = {{ env = \"TESSERA_TEST_SECRET_A\" }}\nmode = \"token\"\ntokens = [{{ file = \"{}\" }}, \"inline\"]\n",
            file.display()
        ))
        .unwrap();
        assert_eq!(config.registration.shared_secret.value(), "from-env");
        assert_eq!(config.registration.tokens[0].value(), "from-file");
        assert_eq!(config.registration.tokens[1].value(), "inline");
    }

    #[test]
    fn missing_env_secret_names_the_key() {
        let err = Config::parse(
            "server_name = \"a.org\"\n[database]\nurl = { env = \"TESSERA_TEST_UNSET_VAR\" }\n",
        )
        .unwrap_err();
        assert_eq!(err.key, "database.url");
    }
}
