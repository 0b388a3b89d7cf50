//! What a managed server needs to use a ring's repository: a deb822 `.sources` file
//! whose `Signed-By` embeds the appliance's public key, so apt trusts that key for this
//! source only (no keyring file, no `apt-key`).

/// The `Signed-By:` value for an embedded armored key: every line indented by one
/// space, empty lines written as ` .` (deb822 continuation rules).
pub fn signed_by(armored: &str) -> String {
    armored
        .trim_end()
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                " .".to_owned()
            } else {
                format!(" {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `.sources` file for `ring` at `base_url` (e.g. `http://patchward.lan:8080`), with
/// the install instructions as comments at the top, so the whole output can be saved
/// as the file.
pub fn sources(
    base_url: &str,
    ring: &str,
    suite: &str,
    armored_key: &str,
    fingerprint: &str,
) -> String {
    let base = base_url.trim_end_matches('/');
    let file = format!("/etc/apt/sources.list.d/patchward-{ring}.sources");
    format!(
        "# Patchward apt repository for ring {ring:?}; key fingerprint {fingerprint}.\n\
         # Install on a server (as root), then install patches with apt as usual:\n\
         #   curl -fsS {base}/apt/{ring}/patchward.sources -o {file} && apt-get update\n\
         Types: deb\n\
         URIs: {base}/apt/{ring}\n\
         Suites: {suite}\n\
         Components: {component}\n\
         Signed-By:\n{key}\n",
        component = super::COMPONENT,
        key = signed_by(armored_key),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_embed_the_key_as_deb822_continuation_lines() {
        let key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEabc\n=XyZ1\n-----END PGP PUBLIC KEY BLOCK-----\n";
        expect_test::expect![[r#"
            # Patchward apt repository for ring "pilot"; key fingerprint ABCD.
            # Install on a server (as root), then install patches with apt as usual:
            #   curl -fsS http://pw.lan:8080/apt/pilot/patchward.sources -o /etc/apt/sources.list.d/patchward-pilot.sources && apt-get update
            Types: deb
            URIs: http://pw.lan:8080/apt/pilot
            Suites: pilot
            Components: main
            Signed-By:
             -----BEGIN PGP PUBLIC KEY BLOCK-----
             .
             mDMEabc
             =XyZ1
             -----END PGP PUBLIC KEY BLOCK-----
        "#]]
        .assert_eq(&sources("http://pw.lan:8080/", "pilot", "pilot", key, "ABCD"));
    }
}
