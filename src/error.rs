//! The one error type of duoclip. Every variant names the file, key, shape or option at
//! fault and, where it helps, what is accepted instead.
//!
//! Options are named by a neutral key (`ref_layers`), never by one front end's spelling: the
//! CLI renders it as `--ref-layers`, the browser as `refLayers` ([`Error::render`]). Inside a
//! message another option is written `‹key›`.

use std::fmt;

/// Everything that can go wrong in duoclip, worded for the user who has to fix it.
#[derive(Debug)]
pub enum Error {
    /// Reading or writing a file failed.
    Io {
        path: String,
        source: std::io::Error,
    },
    /// An image that cannot be used: not an image, too small, too large, unsupported format.
    Image { path: String, message: String },
    /// A checkpoint that cannot be read or does not match the architecture.
    Checkpoint { path: String, message: String },
    /// A user option with a value outside what is accepted: `option` is its neutral key.
    Option { option: String, message: String },
    /// The model registry (models/registry.toml) or a download from it.
    Registry(String),
    /// Text that cannot be tokenized.
    Tokenizer(String),
    /// A tensor computation failed (shape mismatch between model and input, backend failure).
    Model(String),
}

/// duoclip's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }

    /// The message with every option named as `name(key)` gives it (a front end's spelling).
    pub fn render(&self, name: &dyn Fn(&str) -> String) -> String {
        render_options(&self.marked(), name)
    }

    /// The message with options written `‹key›`.
    fn marked(&self) -> String {
        match self {
            Error::Io { path, source } => format!("{path}: {source}"),
            Error::Image { path, message } => format!("image {path}: {message}"),
            Error::Checkpoint { path, message } => format!("checkpoint {path}: {message}"),
            Error::Option { option, message } => format!("option ‹{option}›: {message}"),
            Error::Registry(message) => format!("model registry: {message}"),
            Error::Tokenizer(message) => format!("tokenizer: {message}"),
            Error::Model(message) => format!("model: {message}"),
        }
    }
}

/// `text` with each `‹key›` (a neutral option key: lower case, digits, `_`) replaced by
/// `name(key)`; anything else between those marks is left as it is.
pub fn render_options(text: &str, name: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('‹') {
        let after = &rest[open + '‹'.len_utf8()..];
        let key = after.find('›').map(|close| &after[..close]);
        match key.filter(|k| is_option_key(k)) {
            Some(key) => {
                out.push_str(&rest[..open]);
                out.push_str(&name(key));
                rest = &after[key.len() + '›'.len_utf8()..];
            }
            None => {
                out.push_str(&rest[..open + '‹'.len_utf8()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_option_key(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Without a front end, options read as their keys: ``option `ref_layers`: …``.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&|key| format!("`{key}`")))
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(key: &str) -> String {
        format!("--{}", key.replace('_', "-"))
    }

    #[test]
    fn options_are_rendered_by_the_front_end() {
        let e = Error::Option {
            option: "ref_layers".into(),
            message: "block 12 does not exist; see ‹views› and ‹lambda›".into(),
        };
        assert_eq!(
            e.render(&flag),
            "option --ref-layers: block 12 does not exist; see --views and --lambda"
        );
        assert_eq!(
            e.to_string(),
            "option `ref_layers`: block 12 does not exist; see `views` and `lambda`"
        );
    }

    #[test]
    fn marks_around_anything_but_a_key_are_kept() {
        for text in ["a ‹Not A Key› b", "‹›", "open ‹only", "café ‹ü›"] {
            assert_eq!(render_options(text, &flag), text);
        }
        assert_eq!(render_options("‹a›‹b_2›‹", &flag), "--a--b-2‹");
    }
}
