//! The JSON shapes every HTTP endpoint (edge and origin) answers with.

/// Builds the error body `{"error": "<message>"}` used by every non-2xx response.
///
/// ```
/// assert_eq!(pushwire_shared::http::error_body("bad \"x\""), r#"{"error":"bad \"x\""}"#);
/// ```
pub fn error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// The body of a successful trigger without `info`: `{}`.
pub const EMPTY_OBJECT: &str = "{}";

/// An error that knows which HTTP status it deserves.
///
/// Implemented by every error a request can fail with, so the edge and the origin
/// map the same failure to the same status without a table of their own.
pub trait HttpError: std::error::Error {
    /// The HTTP status code (`400`, `401`, `404`, `413`, `503`, …).
    fn status(&self) -> u16;
}
