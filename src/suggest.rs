//! "Did you mean ...?" for names a person types: patch ids and host names.
//!
//! One helper for every "no such X" error, so they all suggest the same way: an exact
//! match ignoring case first, then the one name that starts with (or contains) what was
//! typed, then the closest name by edit distance if it is close enough to be a typo
//! (at most a third of the typed length, between 1 and 3 edits). No suggestion is better
//! than a wrong one, so several equally good names suggest nothing.

use std::fmt;

/// Names longer than this are not compared (an error path must stay cheap).
const MAX_LEN: usize = 128;

/// The suggestion part of an error message: empty, or ` (did you mean "x"?)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DidYouMean(pub Option<String>);

impl DidYouMean {
    /// The best of `candidates` for `needle`, if any is close enough.
    pub fn among<'a>(needle: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        DidYouMean(closest(needle, candidates).map(str::to_owned))
    }
}

impl fmt::Display for DidYouMean {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(s) => write!(f, " (did you mean {s:?}?)"),
            None => Ok(()),
        }
    }
}

/// The patch `needle` (`ID` or `FEED:ID`) most likely meant among `(feed, id)` pairs:
/// compared with the ids, or with `FEED:ID` when a feed was typed, and suggested in the
/// same form.
pub fn patch_hint<'a>(
    needle: &str,
    patches: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> DidYouMean {
    let patches: Vec<(&str, &str)> = patches.into_iter().collect();
    if needle.contains(':') {
        let keys: Vec<String> = patches.iter().map(|(f, i)| format!("{f}:{i}")).collect();
        DidYouMean::among(needle, keys.iter().map(String::as_str))
    } else {
        DidYouMean::among(needle, patches.iter().map(|(_, i)| *i))
    }
}

/// The candidate `needle` most likely meant, or `None` when none is close or several
/// are equally close.
pub fn closest<'a>(needle: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let n = needle.to_lowercase();
    if n.is_empty() || n.chars().count() > MAX_LEN {
        return None;
    }
    let mut names: Vec<&'a str> = candidates
        .into_iter()
        .filter(|c| !c.is_empty() && c.chars().count() <= MAX_LEN && *c != needle)
        .collect();
    names.sort_unstable();
    names.dedup();
    let lower: Vec<String> = names.iter().map(|c| c.to_lowercase()).collect();
    let only = |hits: Vec<usize>| match hits.as_slice() {
        [one] => Some(names[*one]),
        _ => None,
    };
    let same_case: Vec<usize> = (0..names.len()).filter(|&i| lower[i] == n).collect();
    if !same_case.is_empty() {
        return only(same_case);
    }
    // A prefix or a part is only telling once it is a few characters long.
    if n.chars().count() >= 3 {
        let prefixed: Vec<usize> = (0..names.len())
            .filter(|&i| lower[i].starts_with(&n))
            .collect();
        if !prefixed.is_empty() {
            return only(prefixed);
        }
        let containing: Vec<usize> = (0..names.len())
            .filter(|&i| lower[i].contains(&n))
            .collect();
        if !containing.is_empty() {
            return only(containing);
        }
    }
    let limit = (n.chars().count() / 3).clamp(1, 3);
    let mut best: Option<(usize, Vec<usize>)> = None;
    for (i, c) in lower.iter().enumerate() {
        let d = distance(&n, c);
        if d > limit {
            continue;
        }
        match &mut best {
            Some((bd, hits)) if d == *bd => hits.push(i),
            Some((bd, _)) if d > *bd => {}
            _ => best = Some((d, vec![i])),
        }
    }
    best.and_then(|(_, hits)| only(hits))
}

/// Levenshtein distance over characters, where swapping two neighbours is one edit
/// (the commonest typo).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: the one before the previous is needed for transpositions.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(before[j - 2] + 1);
            }
            cur[j] = v;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(needle: &str, names: &[&str], want: Option<&str>) {
        assert_eq!(closest(needle, names.iter().copied()), want, "{needle:?}");
    }

    #[test]
    fn suggests_what_was_probably_meant() {
        let hosts = ["web-1", "web-2", "db-1", "mail", "backup-nas"];
        check("WEB-1", &hosts, Some("web-1"));
        check("wbe-1", &hosts, Some("web-1"));
        check("db1", &hosts, Some("db-1"));
        check("mial", &hosts, Some("mail"));
        check("backup", &hosts, Some("backup-nas"));
        check("nas", &hosts, Some("backup-nas"));
        let patches = ["DSA-5678-1", "DSA-5680-1", "fw-bios-2.1"];
        check("dsa-5678", &patches, Some("DSA-5678-1"));
        check("DSA-5679-1", &patches, Some("DSA-5678-1"));
        check("DSA-5", &patches, None);
        check("fw-bois-2.1", &patches, Some("fw-bios-2.1"));
    }

    #[test]
    fn suggests_nothing_rather_than_a_guess() {
        let hosts = ["web-1", "web-2", "db-1"];
        check("web", &hosts, None);
        check("web-3", &hosts, None);
        check("printer", &hosts, None);
        check("", &hosts, None);
        check("x", &[], None);
        // A name is not its own suggestion.
        check("db-1", &hosts, None);
        assert_eq!(DidYouMean::default().to_string(), "");
        assert_eq!(
            DidYouMean::among("wbe-1", hosts).to_string(),
            " (did you mean \"web-1\"?)"
        );
    }

    #[test]
    fn patches_are_suggested_in_the_form_typed() {
        let p = [
            ("acme", "DSA-5678-1"),
            ("acme", "fw-bios-2.1"),
            ("other", "x-1"),
        ];
        assert_eq!(patch_hint("DSA-5687-1", p).0.as_deref(), Some("DSA-5678-1"));
        assert_eq!(
            patch_hint("acme:DSA-5678", p).0.as_deref(),
            Some("acme:DSA-5678-1")
        );
        assert_eq!(patch_hint("nothing-like-it", p).0, None);
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("ab", "ba"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
    }
}
