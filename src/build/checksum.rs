//! `ADD --checksum=ALGO:HEX`: the algorithms BuildKit takes (go-digest's `sha256`, `sha384`,
//! `sha512`), parsed once and checked while a file is read.

use std::io;
use std::path::Path;

use sha2::digest::DynDigest;
use sha2::{Sha256, Sha384, Sha512};

/// A parsed `--checksum` of a file source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// `sha256`, `sha384` or `sha512`.
    pub algo: &'static str,
    /// The expected digest, lowercase hex.
    pub hex: String,
}

impl Checksum {
    /// Parse `algo:hex`; the error says what is expected.
    pub fn parse(c: &str) -> Result<Checksum, String> {
        let (algo, len) = match c.split_once(':').map(|(a, _)| a) {
            Some("sha256") => ("sha256", 64),
            Some("sha384") => ("sha384", 96),
            Some("sha512") => ("sha512", 128),
            _ => return Err(format!("--checksum={c}: expected sha256:, sha384: or sha512: and the digest in hex")),
        };
        let hex = &c[algo.len() + 1..];
        if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("--checksum={c}: a {algo} digest is {len} hex digits"));
        }
        Ok(Checksum { algo, hex: hex.to_ascii_lowercase() })
    }

    /// A hasher for this algorithm.
    pub fn hasher(&self) -> Box<dyn DynDigest> {
        match self.algo {
            "sha384" => Box::new(Sha384::default()),
            "sha512" => Box::new(Sha512::default()),
            _ => Box::new(Sha256::default()),
        }
    }

    /// Compare with a finished hash; the error names both digests.
    pub fn verify(&self, got: &[u8], what: &str) -> Result<(), String> {
        let got = hex::encode(got);
        if got == self.hex {
            Ok(())
        } else {
            Err(format!("checksum mismatch for {what}: expected {}:{}, got {}:{got}", self.algo, self.hex, self.algo))
        }
    }

    /// Check the file at `path` (streamed).
    pub fn verify_file(&self, path: &Path, what: &str) -> Result<(), String> {
        let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut h = self.hasher();
        io::copy(&mut f, &mut Feed(h.as_mut())).map_err(|e| format!("{}: {e}", path.display()))?;
        self.verify(&h.finalize(), what)
    }
}

/// A hasher as an `io::Write`, for `io::copy`.
struct Feed<'a>(&'a mut dyn DynDigest);

impl io::Write for Feed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A git source's `--checksum`: a commit id or a prefix of one (at least 7 hex digits).
pub fn check_commit_prefix(c: &str) -> Result<(), String> {
    if (7..=64).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("--checksum={c}: for a git source it is the commit id (at least 7 hex digits)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_go_digest_algorithms() {
        assert!(Checksum::parse("sha256:00").is_err());
        assert!(Checksum::parse("md5:abc").is_err());
        assert!(Checksum::parse(&format!("sha512:{}", "a".repeat(64))).is_err());
        assert_eq!(Checksum::parse(&format!("sha256:{}", "A".repeat(64))).unwrap().hex, "a".repeat(64));
        assert_eq!(Checksum::parse(&format!("sha384:{}", "b".repeat(96))).unwrap().algo, "sha384");
        assert_eq!(Checksum::parse(&format!("sha512:{}", "c".repeat(128))).unwrap().algo, "sha512");
    }

    #[test]
    fn verifies_with_its_algorithm() {
        let c = Checksum::parse(
            "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
        )
        .unwrap();
        let mut h = c.hasher();
        h.update(b"");
        assert!(c.verify(&h.finalize(), "x").is_ok());
        let mut h = c.hasher();
        h.update(b"a");
        assert!(c.verify(&h.finalize(), "x").unwrap_err().contains("expected sha512:cf83"));
        assert!(check_commit_prefix("abc").is_err());
        assert!(check_commit_prefix("zzzzzzz").is_err());
        assert!(check_commit_prefix("abcdef0").is_ok());
    }
}
