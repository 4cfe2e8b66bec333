use thiserror::Error;

/// Why one record of a request was rejected. `index` is its position in the request
/// (0 for a single-record body).
#[derive(Clone, Debug, PartialEq, Eq, Error, serde::Serialize)]
#[error("record {index}: {}{message}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
pub struct RecordError {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    /// Machine-readable reason: `invalid`, `too_large`.
    pub code: &'static str,
}

impl RecordError {
    pub fn invalid(index: usize, field: Option<&str>, message: impl Into<String>) -> Self {
        RecordError { index, field: field.map(str::to_owned), message: message.into(), code: "invalid" }
    }

    pub fn too_large(index: usize, size: usize, limit: usize) -> Self {
        RecordError { index, field: None, message: format!("record is {size} bytes, over the limit of {limit} bytes"), code: "too_large" }
    }

    /// A `too_large` rejection that says why in its own words.
    pub fn too_large_because(index: usize, field: Option<&str>, message: impl Into<String>) -> Self {
        RecordError { index, field: field.map(str::to_owned), message: message.into(), code: "too_large" }
    }
}

/// Why a whole request body was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BodyError {
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("{0}")]
    Shape(String),
    #[error("batch has {count} records, over the limit of {limit}")]
    TooManyRecords { count: usize, limit: usize },
    #[error("request body is empty")]
    Empty,
}
