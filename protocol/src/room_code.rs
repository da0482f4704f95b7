//! Room codes: three groups of lowercase letters (`kfq-wmzt-pxd`), 10 letters = 47 bits from the
//! OS CSPRNG. Parsing forgives case, spaces, dashes and a pasted link that ends in a code.

use std::fmt;
use std::str::FromStr;

use rand::{Rng as _, TryRngCore as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Letters in each group of a code.
const GROUPS: [usize; 3] = [3, 4, 3];
const LETTERS: usize = 10;

/// A validated room code, stored in its canonical form (`kfq-wmzt-pxd`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomCodeError {
    #[error("a room code is 10 letters like kfq-wmzt-pxd; {0:?} has {1} letters")]
    WrongLength(String, usize),
    #[error("a room code has only the letters a-z; {0:?} has {1:?}")]
    BadCharacter(String, char),
}

impl RoomCode {
    /// A fresh code from the operating system's CSPRNG (26^10 ≈ 2^47 codes).
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng.unwrap_err();
        let letters: String = (0..LETTERS)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect();
        Self::from_letters(&letters)
    }

    /// Parses what a person typed or pasted: `KFQ WMZT PXD`, `kfqwmztpxd`,
    /// `https://host/join/kfq-wmzt-pxd`, `https://host/?room=kfq-wmzt-pxd`, `https://host/#kfq-wmzt-pxd`.
    pub fn parse(input: &str) -> Result<Self, RoomCodeError> {
        let trimmed = input.trim().trim_end_matches('/');
        // In a link the code is whatever follows the last separator of path, query or fragment.
        let tail = trimmed
            .rsplit(['/', '#', '=', '?', '&'])
            .next()
            .unwrap_or(trimmed);
        let mut letters = String::with_capacity(LETTERS);
        for c in tail.chars() {
            match c {
                'a'..='z' => letters.push(c),
                'A'..='Z' => letters.push(c.to_ascii_lowercase()),
                '-' | '_' | ' ' | '\t' | '.' => {}
                other => return Err(RoomCodeError::BadCharacter(input.to_owned(), other)),
            }
        }
        if letters.len() != LETTERS {
            return Err(RoomCodeError::WrongLength(input.to_owned(), letters.len()));
        }
        Ok(Self::from_letters(&letters))
    }

    /// `letters` must be exactly 10 ASCII lowercase letters.
    fn from_letters(letters: &str) -> Self {
        let mut code = String::with_capacity(LETTERS + GROUPS.len() - 1);
        let mut start = 0;
        for (i, len) in GROUPS.iter().enumerate() {
            if i > 0 {
                code.push('-');
            }
            code.push_str(&letters[start..start + len]);
            start += len;
        }
        Self(code)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomCode({})", self.0)
    }
}

impl FromStr for RoomCode {
    type Err = RoomCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for RoomCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoomCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, ()>) {
        let got = RoomCode::parse(input)
            .map(|c| c.to_string())
            .map_err(|_| ());
        assert_eq!(
            got.as_deref(),
            expected.as_deref().map_err(|_| &()),
            "input {input:?}"
        );
    }

    #[test]
    fn parsing_forgives_case_spaces_and_links() {
        check("kfq-wmzt-pxd", Ok("kfq-wmzt-pxd"));
        check("KFQ-WMZT-PXD", Ok("kfq-wmzt-pxd"));
        check("  kfq wmzt pxd \n", Ok("kfq-wmzt-pxd"));
        check("kfqwmztpxd", Ok("kfq-wmzt-pxd"));
        check("Kfq_Wmzt_Pxd", Ok("kfq-wmzt-pxd"));
        check(
            "https://confab.example/join/kfq-wmzt-pxd",
            Ok("kfq-wmzt-pxd"),
        );
        check(
            "https://confab.example/join/kfq-wmzt-pxd/",
            Ok("kfq-wmzt-pxd"),
        );
        check(
            "https://confab.example:8443/?room=KFQ-WMZT-PXD",
            Ok("kfq-wmzt-pxd"),
        );
        check("https://confab.example/#kfq-wmzt-pxd", Ok("kfq-wmzt-pxd"));
        check("confab://join/kfq-wmzt-pxd", Ok("kfq-wmzt-pxd"));
    }

    #[test]
    fn parsing_rejects_what_is_not_a_code() {
        check("", Err(()));
        check("kfq-wmzt-px", Err(()));
        check("kfq-wmzt-pxdd", Err(()));
        check("kfq-wm2t-pxd", Err(()));
        check("kfq-wmzt-pxd!", Err(()));
        check("ключ-wmzt-pxd", Err(()));
        check("https://confab.example/join/", Err(()));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = RoomCode::parse("abc").unwrap_err();
        assert!(err.to_string().contains("3 letters"), "{err}");
        let err = RoomCode::parse("abc-defg-hi7").unwrap_err();
        assert!(err.to_string().contains("'7'"), "{err}");
    }

    #[test]
    fn generated_codes_are_canonical_and_distinct() {
        let codes: std::collections::HashSet<String> = (0..1000)
            .map(|_| RoomCode::generate().to_string())
            .collect();
        assert_eq!(
            codes.len(),
            1000,
            "47-bit codes should not collide in 1000 draws"
        );
        for code in &codes {
            assert_eq!(RoomCode::parse(code).unwrap().as_str(), code);
            let groups: Vec<usize> = code.split('-').map(str::len).collect();
            assert_eq!(groups, vec![3, 4, 3]);
        }
        // Every letter shows up: the generator covers the whole alphabet.
        let all: std::collections::HashSet<char> = codes.iter().flat_map(|c| c.chars()).collect();
        assert_eq!(all.len(), 27, "26 letters plus the dash");
    }

    #[test]
    fn serde_round_trip_validates() {
        let code: RoomCode = serde_json::from_str("\"KFQ WMZT PXD\"").unwrap();
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"kfq-wmzt-pxd\"");
        assert!(serde_json::from_str::<RoomCode>("\"nope\"").is_err());
    }
}
