//! The model registry: which CLIP checkpoints duoclip knows by name, where to fetch them, and
//! the sha256 and size every download must match before it is used.
//!
//! The registry is `models/registry.toml`, validated by `build.rs` and embedded in the crate, so
//! native and wasm builds see the same list. This module does no I/O (it compiles for wasm);
//! fetching into the user cache lives in `download` (native, feature `cli`), and the browser
//! fetches the same URLs itself and checks the bytes with [`ModelFile::verify`].

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

use super::schema;
pub use super::schema::{
    Activation, Family, Layout, ModelEntry, ModelFile, WEIGHTS_EXTENSIONS, is_weights_path,
};

/// The registry text compiled into the crate.
pub const BUILTIN_TOML: &str = include_str!("../../models/registry.toml");

/// A validated list of models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    entries: Vec<ModelEntry>,
}

impl Registry {
    /// The registry compiled into duoclip, parsed on first use.
    pub fn builtin() -> &'static Registry {
        static BUILTIN: OnceLock<Registry> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            // build.rs ran the same validation on the same text, so this cannot fail in a
            // build that compiled.
            Registry::parse(BUILTIN_TOML).unwrap_or_else(|e| {
                panic!("models/registry.toml passed build.rs but not Registry::parse: {e}")
            })
        })
    }

    /// Parses and validates registry text (the format of `models/registry.toml`).
    pub fn parse(text: &str) -> Result<Registry> {
        schema::parse(text)
            .map(|entries| Registry { entries })
            .map_err(Error::Registry)
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[ModelEntry] {
        &self.entries
    }

    /// Every model name, in file order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// The entry called `name`, if any.
    pub fn find(&self, name: &str) -> Option<&ModelEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The entry called `name`; the error lists the names that exist.
    pub fn get(&self, name: &str) -> Result<&ModelEntry> {
        self.find(name).ok_or_else(|| {
            Error::Registry(format!(
                "no model named '{name}'. Known models: {}",
                self.names().join(", ")
            ))
        })
    }
}

/// The sha256 of `bytes` as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Checks that `bytes` hash to `expected_hex` (64 hex digits, either case). The error names
/// both hashes.
pub fn verify_sha256(bytes: &[u8], expected_hex: &str) -> Result<()> {
    check_digest(&sha256_hex(bytes), expected_hex)
}

/// Compares a computed digest with the expected one; shared with the streaming downloader.
pub(crate) fn check_digest(actual_hex: &str, expected_hex: &str) -> Result<()> {
    let expected = expected_hex.trim().to_ascii_lowercase();
    if !schema::is_sha256_hex(&expected) {
        return Err(Error::Registry(format!(
            "the expected sha256 \"{expected_hex}\" is not 64 hex digits, so nothing can be checked against it"
        )));
    }
    if actual_hex == expected {
        Ok(())
    } else {
        Err(Error::Registry(format!(
            "sha256 mismatch: expected {expected}, got {actual_hex}"
        )))
    }
}

impl ModelFile {
    /// Checks downloaded bytes against the registry: size (where known), then sha256. A file
    /// without a recorded sha256 is refused, since nothing vouches for it.
    pub fn verify(&self, bytes: &[u8]) -> Result<()> {
        if let Some(expected) = self.bytes
            && bytes.len() as u64 != expected
        {
            return Err(Error::Registry(format!(
                "{}: size mismatch: expected {expected} bytes, got {}",
                self.path,
                bytes.len()
            )));
        }
        let Some(expected) = &self.sha256 else {
            return Err(self.unverifiable());
        };
        verify_sha256(bytes, expected).map_err(|e| match e {
            Error::Registry(message) => Error::Registry(format!("{}: {message}", self.path)),
            other => other,
        })
    }

    /// The error for a file the registry has no sha256 for.
    pub fn unverifiable(&self) -> Error {
        Error::Registry(format!(
            "{}: the registry records no sha256 for this file, so duoclip will not download or \
             trust it. Fetch it yourself from {}, check it against a hash you trust, and pass \
             its path instead of the model name.",
            self.path,
            self.urls.join(" or ")
        ))
    }
}

impl From<Activation> for crate::clip::Activation {
    fn from(act: Activation) -> Self {
        match act {
            Activation::Gelu => crate::clip::Activation::Gelu,
            Activation::QuickGelu => crate::clip::Activation::QuickGelu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn builtin_registry_parses_with_the_documented_models() {
        let registry = Registry::builtin();
        let names = registry.names();
        for expected in [
            "vit-b-16-plus-240-laion400m-e32",
            "openai-vit-b-16",
            "openai-vit-b-32",
            "openai-vit-l-14-336",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        let anovl = registry.get("vit-b-16-plus-240-laion400m-e32").unwrap();
        assert_eq!(anovl.family, Family::OpenClip);
        assert_eq!(anovl.layout, Layout::OpenClip);
        assert_eq!(anovl.arch, "ViT-B-16-plus-240");
        assert_eq!(anovl.image_size, 240);
        assert_eq!(anovl.act, Activation::Gelu);
        let weights = anovl.weights_file().unwrap();
        assert!(weights.sha256.as_deref().unwrap().starts_with("699c4b84"));
        assert_eq!(weights.bytes, Some(833_559_975));

        let large = registry.get("openai-vit-l-14-336").unwrap();
        assert_eq!(large.layout, Layout::Hf);
        assert!(large.files.iter().any(|f| f.path == "config.json"));
        assert_eq!(large.weights_file().unwrap().path, "model.safetensors");
        // Its size is not published: the hub page's figure, for display only.
        assert_eq!(large.weights_file().unwrap().bytes, None);
        assert_eq!(
            large.weights_file().unwrap().approx_bytes,
            Some(1_710_000_000)
        );
        for entry in registry.entries() {
            assert!(
                entry.files.iter().all(|f| f.sha256.is_some()),
                "{} has a file without sha256",
                entry.name
            );
        }
    }

    #[test]
    fn unknown_name_lists_known_names() {
        let message = Registry::builtin().get("vit-h-14").unwrap_err().to_string();
        assert!(message.contains("vit-h-14"), "{message}");
        for name in Registry::builtin().names() {
            assert!(message.contains(name), "{message} does not list {name}");
        }
    }

    #[test]
    fn sha256_matches_and_mismatch_names_both_hashes() {
        assert_eq!(sha256_hex(b"abc"), ABC_SHA256);
        verify_sha256(b"abc", ABC_SHA256).unwrap();
        verify_sha256(b"abc", &ABC_SHA256.to_uppercase()).unwrap();
        let message = verify_sha256(b"abd", ABC_SHA256).unwrap_err().to_string();
        assert!(message.contains(ABC_SHA256), "{message}");
        assert!(message.contains(&sha256_hex(b"abd")), "{message}");
        assert!(
            verify_sha256(b"abc", "beef")
                .unwrap_err()
                .to_string()
                .contains("not 64 hex digits")
        );
    }

    #[test]
    fn model_file_verify_checks_size_then_hash_and_refuses_without_hash() {
        let mut file = ModelFile {
            path: "w.safetensors".into(),
            urls: vec!["https://example.org/w.safetensors".into()],
            sha256: Some(ABC_SHA256.into()),
            bytes: Some(3),
            approx_bytes: None,
        };
        file.verify(b"abc").unwrap();
        assert!(
            file.verify(b"abcd")
                .unwrap_err()
                .to_string()
                .contains("size mismatch")
        );
        assert!(
            file.verify(b"abd")
                .unwrap_err()
                .to_string()
                .contains("sha256 mismatch")
        );
        file.sha256 = None;
        let message = file.verify(b"abc").unwrap_err().to_string();
        assert!(
            message.contains("no sha256") && message.contains("https://example.org/w.safetensors"),
            "{message}"
        );
    }

    const GOOD: &str = r#"
[[model]]
name = "tiny"
family = "openclip"
layout = "openclip"
arch = "ViT-T"
image_size = 32
act = "gelu"
license = "MIT"
[[model.files]]
path = "tiny.safetensors"
urls = ["https://example.org/tiny.safetensors"]
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
bytes = 3
"#;

    #[test]
    fn parse_accepts_a_minimal_entry() {
        let registry = Registry::parse(GOOD).unwrap();
        assert_eq!(registry.names(), ["tiny"]);
    }

    #[test]
    fn parse_errors_name_the_entry_and_field() {
        let cases = [
            (
                GOOD.replace("ba7816bf", "BA7816BF"),
                "field `files[0] 'tiny.safetensors'.sha256`",
            ),
            (GOOD.replace("https://", "http://"), ".urls`"),
            (GOOD.replace("bytes = 3", "bytes = 0"), ".bytes`"),
            (GOOD.replace("bytes = 3\n", ""), "bytes unknown"),
            (
                GOOD.replace("bytes = 3\n", "bytes = 3\napprox_bytes = 3\n"),
                "field `files[0] 'tiny.safetensors'.approx_bytes`: only for a file whose exact",
            ),
            (
                GOOD.replace("\"gelu\"", "\"relu\""),
                "field `act`: \"relu\" is not one of",
            ),
            (
                GOOD.replace("\"openclip\"\nlayout", "\"laion\"\nlayout"),
                "field `family`",
            ),
            (
                GOOD.replace("layout = \"openclip\"", "layout = \"hf\""),
                "config.json",
            ),
            (
                GOOD.replace("tiny.safetensors\"\n", "../tiny.safetensors\"\n"),
                ".path`",
            ),
            (
                format!("{GOOD}{GOOD}"),
                "field `name`: the name is used by more than one entry",
            ),
            (
                GOOD.split("[[model.files]]").next().unwrap().to_string(),
                "field `files`",
            ),
            (
                GOOD.replace("license = \"MIT\"", "licence = \"MIT\""),
                "licence",
            ),
        ];
        for (text, expected) in cases {
            let message = Registry::parse(&text).unwrap_err().to_string();
            assert!(
                message.contains(expected),
                "expected {expected:?} in:\n{message}"
            );
            if !expected.contains("licence") {
                assert!(
                    message.contains("entry 'tiny'"),
                    "entry not named in:\n{message}"
                );
            }
        }
    }
}
