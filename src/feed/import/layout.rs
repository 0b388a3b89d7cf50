//! Paths of a published feed (what `patchward feed publish` writes under `public/`),
//! shared by the directory and HTTP transports.

/// The timestamp, written last by the publisher.
pub const TIMESTAMP: &str = "timestamp.json";

/// Root metadata version `v`.
pub fn root(v: u64) -> String {
    format!("root/{v}.root.json")
}

/// A catalog: version `v`, or the latest when the version is not known.
pub fn catalog(v: Option<u64>) -> String {
    match v {
        Some(v) => format!("catalog/{v}.catalog.json"),
        None => "catalog.json".to_string(),
    }
}

/// A blob by its sha256.
pub fn blob(sha256: &str) -> String {
    format!("blobs/sha256/{sha256}")
}
