//! `[legacy]`: how end-of-life hosts are judged (issue [9]): the warning horizon before
//! security support ends, whether a host the lifecycle catalog does not know counts as
//! end-of-life, and the longest risk acceptance an admin may record.

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source, pick, positive};

/// The validated `[legacy]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyConfig {
    /// A host whose security support ends within this many days is `eol_soon`.
    pub eol_soon_days: u32,
    /// Whether a host whose product or cycle the catalog does not know is treated as
    /// end-of-life (excluded from rollouts, counted as a finding).
    pub unknown_is_eol: bool,
    /// The longest a risk acceptance may run, in days from when it is recorded.
    pub max_acceptance_days: u32,
}

impl Default for LegacyConfig {
    /// The embedded defaults (`default-config.toml` says the same).
    fn default() -> Self {
        Self {
            eol_soon_days: 90,
            unknown_is_eol: false,
            max_acceptance_days: 365,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLegacy {
    eol_soon_days: Option<Spanned<i64>>,
    unknown_is_eol: Option<Spanned<bool>>,
    max_acceptance_days: Option<Spanned<i64>>,
}

pub(super) fn parse(
    f: Option<&RawLegacy>,
    fsrc: &Source<'_>,
    d: Option<&RawLegacy>,
    dsrc: &Source<'_>,
) -> Result<LegacyConfig, ConfigError> {
    macro_rules! get {
        ($field:ident) => {
            pick(
                f.and_then(|a| a.$field.as_ref()),
                fsrc,
                d.and_then(|a| a.$field.as_ref()),
                dsrc,
            )
        };
    }
    Ok(LegacyConfig {
        eol_soon_days: positive(&get!(eol_soon_days), "legacy.eol_soon_days", 0, 3650)?,
        unknown_is_eol: get!(unknown_is_eol).value,
        max_acceptance_days: positive(
            &get!(max_acceptance_days),
            "legacy.max_acceptance_days",
            1,
            3650,
        )?,
    })
}

pub(super) fn to_toml(l: &LegacyConfig) -> String {
    format!(
        "[legacy]\neol_soon_days = {}\nunknown_is_eol = {}\nmax_acceptance_days = {}\n",
        l.eol_soon_days, l.unknown_is_eol, l.max_acceptance_days
    )
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Overrides};

    #[test]
    fn defaults_overrides_and_range_errors() {
        let c = Config::from_sources(None, &Overrides::default()).unwrap();
        assert_eq!(c.legacy, super::LegacyConfig::default());
        let c = Config::from_sources(
            Some((
                "site.toml",
                "[legacy]\neol_soon_days = 30\nunknown_is_eol = true\nmax_acceptance_days = 90\n",
            )),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            (
                c.legacy.eol_soon_days,
                c.legacy.unknown_is_eol,
                c.legacy.max_acceptance_days
            ),
            (30, true, 90)
        );
        let again = Config::from_sources(Some(("shown.toml", &c.to_toml())), &Overrides::default())
            .unwrap();
        assert_eq!(again.legacy, c.legacy);
        for (text, want) in [
            (
                "[legacy]\nmax_acceptance_days = 0\n",
                "site.toml:2: key `legacy.max_acceptance_days`: 0 is out of range; allowed: 1 to 3650",
            ),
            (
                "[legacy]\neol_soon_days = -1\n",
                "site.toml:2: key `legacy.eol_soon_days`: -1 is out of range; allowed: 0 to 3650",
            ),
        ] {
            let e = Config::from_sources(Some(("site.toml", text)), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
