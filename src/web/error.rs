//! Errors as JavaScript sees them: an `Error` with a stable `code` (`bad_image`,
//! `bad_weights`, `bad_option`, `no_text_tower`, `device`, `internal`), options named as the
//! JS options spell them.

use js_sys::Reflect;
use wasm_bindgen::prelude::*;

use crate::Error;

/// A JS error with a stable `code`.
pub struct WebError {
    pub code: &'static str,
    pub message: String,
}

impl WebError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        WebError {
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for WebError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Image { .. } => "bad_image",
            Error::Checkpoint { .. } => "bad_weights",
            Error::Option { .. } | Error::Tokenizer(_) => "bad_option",
            Error::Io { .. } | Error::Registry(_) | Error::Model(_) => "internal",
        };
        WebError::new(code, e.render(&js_name))
    }
}

impl From<WebError> for JsValue {
    fn from(e: WebError) -> JsValue {
        let error = js_sys::Error::new(&e.message);
        let _ = Reflect::set(&error, &"code".into(), &e.code.into());
        error.into()
    }
}

/// An option's neutral key as the JS options spell it: `ref_layers` → `refLayers`, and
/// `reference` → `references` (the JS option is the list).
fn js_name(key: &str) -> String {
    if key == "reference" {
        return "references".into();
    }
    let mut words = key.split('_');
    let first = words.next().unwrap_or_default().to_string();
    words.fold(first, |mut name, word| {
        let mut chars = word.chars();
        name.extend(chars.next().map(|c| c.to_ascii_uppercase()));
        name.push_str(chars.as_str());
        name
    })
}

pub type WebResult<T> = std::result::Result<T, WebError>;

/// The innermost cause of a wgpu error's text ("... Caused by: Destroyed: Device was
/// destroyed. Backtrace: ..."): what a user can act on, without the chain and backtrace.
pub fn root_cause(message: &str) -> &str {
    let chain = message.split("Backtrace:").next().unwrap_or(message);
    chain.rsplit("Caused by:").next().unwrap_or(chain).trim()
}
