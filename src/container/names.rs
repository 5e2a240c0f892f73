//! Container IDs (64 hex digits, shown as 12) and Docker-like generated names.

use std::io::Read;

use super::ContainerError;

/// Length of the short ID `ps` shows.
pub const SHORT_ID_LEN: usize = 12;

/// A new random 64-hex container ID. As Docker, IDs whose short form is all digits are
/// skipped, so a short ID never looks like a number.
pub fn new_id() -> Result<String, ContainerError> {
    let mut f = std::fs::File::open("/dev/urandom")
        .map_err(|e| ContainerError::io("/dev/urandom", e))?;
    loop {
        let mut buf = [0u8; 32];
        f.read_exact(&mut buf).map_err(|e| ContainerError::io("/dev/urandom", e))?;
        let id = hex::encode(buf);
        if !short_id(&id).bytes().all(|b| b.is_ascii_digit()) {
            return Ok(id);
        }
    }
}

/// The first 12 characters of an ID.
pub fn short_id(id: &str) -> &str {
    id.get(..SHORT_ID_LEN).unwrap_or(id)
}

/// Whether `s` looks like a full container ID.
pub fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<(), ContainerError> {
    let mut chars = name.chars();
    let ok = name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ContainerError::InvalidName(name.to_string()))
    }
}

const ADJECTIVES: &[&str] = &[
    "admiring", "affectionate", "amazing", "awesome", "blissful", "bold", "brave", "busy",
    "clever", "cool", "dazzling", "determined", "eager", "ecstatic", "elastic", "elegant",
    "epic", "festive", "focused", "friendly", "funny", "gallant", "gifted", "goofy", "happy",
    "hopeful", "jolly", "keen", "kind", "laughing", "loving", "lucid", "magical", "modest",
    "nice", "nifty", "optimistic", "peaceful", "practical", "quirky", "relaxed", "serene",
    "sharp", "silly", "stoic", "sweet", "tender", "trusting", "upbeat", "vibrant", "wizardly",
    "youthful", "zealous", "zen",
];

const SURNAMES: &[&str] = &[
    "agnesi", "albattani", "archimedes", "babbage", "bardeen", "bell", "blackwell", "bohr",
    "curie", "darwin", "dijkstra", "einstein", "euclid", "euler", "fermat", "feynman",
    "franklin", "galileo", "gauss", "goldberg", "hamilton", "hawking", "hodgkin", "hopper",
    "hypatia", "johnson", "kepler", "knuth", "lamport", "leakey", "lovelace", "mayer",
    "mccarthy", "meitner", "montalcini", "newton", "noether", "pare", "pascal", "payne",
    "ritchie", "shannon", "sinoussi", "tesla", "thompson", "torvalds", "turing", "wilson",
    "wozniak", "wright", "yalow", "yonath",
];

/// A Docker-like `adjective_surname` name not in `taken`, derived from the random ID (so no
/// second source of randomness); a digit suffix is added when every pick clashes.
pub fn generate_name(id: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let bytes = hex::decode(id).unwrap_or_default();
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0) as usize;
    for round in 0..8 {
        let a = ADJECTIVES[(at(2 * round) * 7 + at(16)) % ADJECTIVES.len()];
        let s = SURNAMES[(at(2 * round + 1) * 7 + at(17)) % SURNAMES.len()];
        let name = format!("{a}_{s}");
        if !taken(&name) {
            return name;
        }
    }
    let base = format!(
        "{}_{}",
        ADJECTIVES[at(0) % ADJECTIVES.len()],
        SURNAMES[at(1) % SURNAMES.len()]
    );
    (1..)
        .map(|n| format!("{base}{n}"))
        .find(|n| !taken(n))
        .unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_short_is_12() {
        let id = new_id().unwrap();
        assert!(is_full_id(&id), "{id}");
        assert_eq!(short_id(&id).len(), 12);
        assert_ne!(new_id().unwrap(), id);
    }

    #[test]
    fn names() {
        for ok in ["web", "a1", "my_app.v2-x", "ABC"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "a", "_x", "-x", "a b", "x/y", "ü1"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_names_are_valid_and_avoid_taken() {
        let id = "ab".repeat(32);
        let first = generate_name(&id, &|_| false);
        validate_name(&first).unwrap();
        assert!(first.contains('_'));
        let second = generate_name(&id, &|n| n == first);
        assert_ne!(first, second);
        let all_taken = generate_name(&id, &|n| !n.ends_with('3'));
        assert!(all_taken.ends_with('3'), "{all_taken}");
    }
}
