//! The CSV file of `legacy import`, parsed (pure): a header row naming the columns
//! `name,addresses,product,cycle` (required) and `owner,notes,unlisted` (optional), in
//! any order; then one host per row. Inside `addresses`, addresses are separated by `;`
//! or spaces (a comma would need quoting). `unlisted` is `yes`/`no` (or `true`/`false`,
//! `1`/`0`, empty = no). Fields are trimmed; a quoted field may hold newlines (notes).
//!
//! A row that cannot be read is reported with its line number beside the rows whose
//! values are bad, so one run of `legacy import` names every problem in the file.

use super::LegacyError;
use super::registry::{MAX_IMPORT_BYTES, MAX_IMPORT_ROWS, NewHost};

const REQUIRED: [&str; 4] = ["name", "addresses", "product", "cycle"];
const OPTIONAL: [&str; 3] = ["owner", "notes", "unlisted"];

/// A parsed file: the rows that could be read, by line number, and the problems of
/// those that could not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub rows: Vec<(u64, NewHost)>,
    pub problems: Vec<(u64, String)>,
}

fn refused(file: &str, why: String) -> LegacyError {
    LegacyError::Refused(format!("{file}: {why}; nothing imported"))
}

/// Parses `bytes` (named `file` in errors). A file whose header is wrong, or that is
/// too large, is refused as a whole.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Parsed, LegacyError> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(refused(
            file,
            format!(
                "the file is {} bytes; at most {MAX_IMPORT_BYTES} are accepted",
                bytes.len()
            ),
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| refused(file, format!("the header row cannot be read: {e}")))?
        .clone();
    let columns = columns(&header).map_err(|why| refused(file, why))?;
    let mut out = Parsed::default();
    for (n, record) in reader.records().enumerate() {
        if n >= MAX_IMPORT_ROWS {
            return Err(refused(
                file,
                format!("more than {MAX_IMPORT_ROWS} hosts; split the file"),
            ));
        }
        match record {
            Ok(r) => {
                let line = r.position().map_or(0, |p| p.line());
                match row(&columns, &r) {
                    Ok(h) => out.rows.push((line, h)),
                    Err(why) => out.problems.push((line, why)),
                }
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                out.problems.push((line, record_error(&e)));
            }
        }
    }
    Ok(out)
}

/// Where each known column is (index into a record).
struct Columns {
    name: usize,
    addresses: usize,
    product: usize,
    cycle: usize,
    owner: Option<usize>,
    notes: Option<usize>,
    unlisted: Option<usize>,
}

fn columns(header: &csv::StringRecord) -> Result<Columns, String> {
    let names: Vec<String> = header.iter().map(|h| h.to_ascii_lowercase()).collect();
    for (i, n) in names.iter().enumerate() {
        if !REQUIRED.contains(&n.as_str()) && !OPTIONAL.contains(&n.as_str()) {
            return Err(format!(
                "unknown column {n:?} in the header row; the columns are {} (required) and {} (optional)",
                REQUIRED.join(","),
                OPTIONAL.join(",")
            ));
        }
        if names[..i].contains(n) {
            return Err(format!("column {n:?} is named twice in the header row"));
        }
    }
    let find = |c: &str| names.iter().position(|n| n == c);
    let missing: Vec<&str> = REQUIRED.into_iter().filter(|c| find(c).is_none()).collect();
    if !missing.is_empty() {
        return Err(format!(
            "the header row lacks the column(s) {}; the first row must name the columns \
             (e.g. name,addresses,product,cycle,owner,notes)",
            missing.join(",")
        ));
    }
    let req = |c: &str| find(c).expect("checked above");
    Ok(Columns {
        name: req("name"),
        addresses: req("addresses"),
        product: req("product"),
        cycle: req("cycle"),
        owner: find("owner"),
        notes: find("notes"),
        unlisted: find("unlisted"),
    })
}

fn row(c: &Columns, r: &csv::StringRecord) -> Result<NewHost, String> {
    let get = |i: usize| r.get(i).unwrap_or("").to_string();
    let opt = |i: Option<usize>| i.map(get).unwrap_or_default();
    let unlisted = match opt(c.unlisted).to_ascii_lowercase().as_str() {
        "" | "no" | "false" | "0" => false,
        "yes" | "true" | "1" => true,
        other => return Err(format!("unlisted must be yes or no, not {other:?}")),
    };
    Ok(NewHost {
        name: get(c.name),
        addresses: get(c.addresses)
            .split(|ch: char| ch == ';' || ch.is_whitespace())
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
        product: get(c.product),
        cycle: get(c.cycle),
        owner: opt(c.owner),
        notes: opt(c.notes),
        unlisted,
    })
}

/// A record-level error in words (the position is reported as the line number).
fn record_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8 text".to_string(),
        _ => e.to_string(),
    }
}
