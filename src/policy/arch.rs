//! Architecture names: one vocabulary, Debian's (`dpkg --print-architecture`).
//!
//! Patch selectors are written in Debian's names (`amd64`, `arm64`), while a host may
//! report the kernel's or the compiler's (`x86_64`, `aarch64`: `uname -m`, Rust's
//! `std::env::consts::ARCH`). Compared as written, a selector `arch = "amd64"` matched
//! no `x86_64` host, silently. Every comparison of architectures goes through
//! [`debian`], on both sides, so the two spellings of one architecture are equal.
//!
//! Decisions: names are compared without case and surrounding blanks; a name this table
//! does not know is kept (lower-cased), so a new Debian port still matches itself; the
//! names that mean different Debian ports depending on the ABI (`arm`, `mips`,
//! `mips64`, `powerpc64` from Rust, which does not say the float ABI or the byte order)
//! map to the port Debian ships for them today (`armhf`, `mipsel`, `mips64el`,
//! `ppc64el`), and the agent reports dpkg's own answer when it can.

use std::borrow::Cow;

/// Aliases and the Debian name each stands for. Debian's own names map to themselves
/// implicitly (they are not listed unless another spelling needs them).
const ALIASES: &[(&str, &str)] = &[
    // 64-bit x86
    ("x86_64", "amd64"),
    ("x86-64", "amd64"),
    ("x64", "amd64"),
    // 32-bit x86
    ("i486", "i386"),
    ("i586", "i386"),
    ("i686", "i386"),
    ("x86", "i386"),
    ("ia32", "i386"),
    // 64-bit Arm
    ("aarch64", "arm64"),
    ("armv8", "arm64"),
    // 32-bit Arm, hard float (ARMv7)
    ("armv7l", "armhf"),
    ("armv7", "armhf"),
    ("armv7hl", "armhf"),
    ("armv8l", "armhf"),
    ("arm", "armhf"),
    // 32-bit Arm, soft float (ARMv5/v6)
    ("armv5tel", "armel"),
    ("armv5l", "armel"),
    ("armv6l", "armel"),
    // POWER
    ("ppc64le", "ppc64el"),
    ("powerpc64le", "ppc64el"),
    ("powerpc64", "ppc64el"),
    ("ppc", "powerpc"),
    // IBM Z
    ("s390", "s390x"),
    // RISC-V
    ("riscv64gc", "riscv64"),
    // LoongArch
    ("loongarch64", "loong64"),
    // MIPS (Debian ships the little-endian ports)
    ("mips64", "mips64el"),
    ("mips", "mipsel"),
];

/// The Debian name of an architecture (`x86_64` -> `amd64`, `aarch64` -> `arm64`); an
/// unknown name comes back lower-cased and trimmed.
pub fn debian(name: &str) -> Cow<'_, str> {
    let t = name.trim();
    let lower: Cow<'_, str> = if t.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(t.to_ascii_lowercase())
    } else {
        Cow::Borrowed(t)
    };
    match ALIASES.iter().find(|(alias, _)| *alias == lower) {
        Some((_, deb)) => Cow::Borrowed(deb),
        None => lower,
    }
}

/// Whether two architecture names mean the same architecture.
pub fn same(a: &str, b: &str) -> bool {
    debian(a) == debian(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_maps_to_its_debian_name() {
        for (names, deb) in [
            (&["x86_64", "X86_64", "x86-64", "x64", "amd64"][..], "amd64"),
            (&["i386", "i486", "i586", "i686", "x86", "ia32"], "i386"),
            (&["aarch64", "arm64", "armv8", " AArch64 "], "arm64"),
            (
                &["armv7l", "armv7", "armv7hl", "armv8l", "arm", "armhf"],
                "armhf",
            ),
            (&["armv5tel", "armv5l", "armv6l", "armel"], "armel"),
            (
                &["ppc64le", "powerpc64le", "powerpc64", "ppc64el"],
                "ppc64el",
            ),
            (&["ppc", "powerpc"], "powerpc"),
            (&["s390x", "s390"], "s390x"),
            (&["riscv64", "riscv64gc"], "riscv64"),
            (&["loongarch64", "loong64"], "loong64"),
            (&["mips64", "mips64el"], "mips64el"),
            (&["mips", "mipsel"], "mipsel"),
        ] {
            for n in names {
                assert_eq!(debian(n), deb, "{n:?}");
                assert!(same(n, deb), "{n:?}");
            }
        }
        // Unknown names are kept, compared without case; different ports differ.
        assert_eq!(debian("Sparc64"), "sparc64");
        assert!(same("hppa", "HPPA"));
        assert!(!same("amd64", "arm64"));
        assert!(!same("x86_64", "i686"));
        assert!(!same("armhf", "armel"));
    }

    #[test]
    fn the_agents_own_build_arch_has_a_debian_name() {
        // The fallback the agent reports when dpkg is missing.
        let d = debian(std::env::consts::ARCH);
        assert!(
            [
                "amd64", "arm64", "i386", "armhf", "ppc64el", "s390x", "riscv64"
            ]
            .contains(&d.as_ref()),
            "{d}"
        );
    }
}
