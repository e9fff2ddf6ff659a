//! The one error type of duoclip. Every variant names the file, key, shape or option at
//! fault and, where it helps, what is accepted instead.

/// Everything that can go wrong in duoclip, worded for the user who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// An image that cannot be used: not an image, too small, too large, unsupported format.
    #[error("image {path}: {message}")]
    Image { path: String, message: String },
    /// A checkpoint that cannot be read or does not match the architecture.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: String, message: String },
    /// A user option with a value outside what is accepted.
    #[error("option {option}: {message}")]
    Option { option: String, message: String },
    /// The model registry (models/registry.toml) or a download from it.
    #[error("model registry: {0}")]
    Registry(String),
    /// Text that cannot be tokenized.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A tensor computation failed (shape mismatch between model and input, backend failure).
    #[error("model: {0}")]
    Model(String),
}

/// duoclip's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }
}
