//! The "next steps" that end the start-up block: how far the appliance is set up (a
//! pinned feed root, imported content, a first host or token), read once at start, and
//! the exact commands for what is left.

use crate::config::Config;

/// How far the appliance is set up, read at start for the block's next steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    /// `[[mirror.sources]]` entries (each pins a feed root).
    pub sources: usize,
    /// Feeds with an imported catalog.
    pub catalogs: usize,
    /// Enrolled hosts plus enrollment tokens ever created.
    pub hosts_or_tokens: usize,
    /// The first ring in order (where the first hosts go).
    pub first_ring: Option<String>,
    /// `patchward` with the options this server was started with (`--data-dir ...`),
    /// so the printed commands act on this appliance.
    pub command: String,
}

impl Setup {
    /// Counts what is set up in `conn` under `config`.
    pub fn read(
        conn: &rusqlite::Connection,
        config: &Config,
        command: String,
    ) -> rusqlite::Result<Self> {
        let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
        Ok(Setup {
            sources: config.mirror.sources.len(),
            catalogs: usize::try_from(count("SELECT count(*) FROM catalogs")?).unwrap_or(0),
            hosts_or_tokens: usize::try_from(
                count("SELECT count(*) FROM hosts")?
                    + count("SELECT count(*) FROM enrollment_tokens")?,
            )
            .unwrap_or(0),
            first_ring: config.policy.ring_names().first().map(|s| s.to_string()),
            command,
        })
    }

    /// The three steps from an empty appliance to a first host, each with the exact
    /// commands and marked `(done)` once it is.
    pub fn next_steps(&self) -> String {
        let pw = &self.command;
        let done = |d: bool| if d { "  (done)" } else { "" };
        let ring = self.first_ring.as_deref().unwrap_or("pilot");
        format!(
            "  next steps\n    \
             1. pin a feed root{}\n         \
                install -D -m 0644 FEED.root.json /etc/patchward/roots/FEED.root.json\n         \
                add [[mirror.sources]] with name and root = \"roots/FEED.root.json\" (and a url to \
                sync online; none for bundles only) to the config (mirror/README.md), then restart\n    \
             2. import a bundle or sync{}\n         \
                {pw} import FILE.pwb\n         \
                {pw} mirror sync\n    \
             3. create an enrollment token for the first host{}\n         \
                {pw} hosts token create --ring {ring}\n",
            done(self.sources > 0),
            done(self.catalogs > 0),
            done(self.hosts_or_tokens > 0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Setup;

    #[test]
    fn steps_name_their_commands_and_say_which_are_done() {
        let mut s = Setup {
            first_ring: Some("canary".into()),
            command: "patchward --config /etc/pw.toml".into(),
            ..Setup::default()
        };
        let text = s.next_steps();
        assert!(!text.contains("(done)"), "{text}");
        assert!(
            text.contains("patchward --config /etc/pw.toml import FILE.pwb\n"),
            "{text}"
        );
        assert!(
            text.ends_with("patchward --config /etc/pw.toml hosts token create --ring canary\n"),
            "{text}"
        );
        s.sources = 1;
        s.catalogs = 1;
        let text = s.next_steps();
        assert!(text.contains("1. pin a feed root  (done)\n"), "{text}");
        assert!(
            text.contains("2. import a bundle or sync  (done)\n"),
            "{text}"
        );
        assert!(
            text.contains("3. create an enrollment token for the first host\n"),
            "{text}"
        );
    }
}
