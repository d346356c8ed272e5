//! Random identifiers and generated container names.

use std::fmt::Write;

/// 32 random bytes as 64 lowercase hex characters (podman's container id format).
pub fn random_id() -> String {
    let mut buf = [0u8; 32];
    fill_random(&mut buf);
    let mut s = String::with_capacity(64);
    for b in buf {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Fills `buf` from the kernel's random pool.
pub fn fill_random(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        match rustix::rand::getrandom(&mut buf[done..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => continue,
            // getrandom(2) cannot fail on Linux >= 3.17 except for EINTR; fall back to time-based
            // bytes rather than aborting so that a broken seccomp sandbox does not stop nook.
            Err(_) => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
                    ^ u128::from(std::process::id()) << 64;
                for (i, b) in buf[done..].iter_mut().enumerate() {
                    *b = (t >> ((i % 16) * 8)) as u8 ^ i as u8;
                }
                return;
            }
        }
    }
}

const ADJECTIVES: &[&str] = &[
    "admiring",
    "agile",
    "amazing",
    "bold",
    "brave",
    "busy",
    "calm",
    "clever",
    "cool",
    "crazy",
    "dazzling",
    "eager",
    "elastic",
    "epic",
    "fervent",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "happy",
    "hopeful",
    "jolly",
    "keen",
    "kind",
    "laughing",
    "lucid",
    "magical",
    "modest",
    "nifty",
    "nostalgic",
    "optimistic",
    "peaceful",
    "pensive",
    "practical",
    "quirky",
    "quiet",
    "relaxed",
    "serene",
    "sharp",
    "silly",
    "stoic",
    "sweet",
    "tender",
    "trusting",
    "upbeat",
    "vibrant",
    "wizardly",
    "wonderful",
    "youthful",
    "zealous",
];

const NOUNS: &[&str] = &[
    "albattani",
    "babbage",
    "bardeen",
    "bell",
    "bhabha",
    "bohr",
    "cannon",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euclid",
    "euler",
    "fermat",
    "feynman",
    "galileo",
    "gauss",
    "goodall",
    "hamilton",
    "hawking",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "lovelace",
    "mayer",
    "mclean",
    "meitner",
    "morse",
    "newton",
    "noether",
    "pascal",
    "pasteur",
    "perlman",
    "raman",
    "ritchie",
    "sammet",
    "shannon",
    "swartz",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "villani",
    "wiles",
    "wozniak",
    "wright",
    "yalow",
];

/// A podman-style `adjective_noun` name; callers retry on collision.
pub fn random_name() -> String {
    let mut b = [0u8; 4];
    fill_random(&mut b);
    let a = u16::from_le_bytes([b[0], b[1]]) as usize % ADJECTIVES.len();
    let n = u16::from_le_bytes([b[2], b[3]]) as usize % NOUNS.len();
    format!("{}_{}", ADJECTIVES[a], NOUNS[n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_differ() {
        let a = random_id();
        let b = random_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn names_have_two_parts() {
        let n = random_name();
        let (a, b) = n.split_once('_').expect("underscore");
        assert!(ADJECTIVES.contains(&a) && NOUNS.contains(&b));
    }
}
