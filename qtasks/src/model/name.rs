//! [`Name`]: the string type of a task's name, its queue and its worker.

use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

/// An immutable string for the names a task carries: its task name, its
/// queue and the id of the worker that ran it.
///
/// A name of up to 24 bytes (12 on 32-bit targets) is held inline, so
/// making, cloning and dropping one never allocates; a longer one is kept
/// on the heap as a `String` is, and each clone of it allocates. These names are copied several times per task (into the
/// message a worker takes, into the record it stores), so this saves
/// allocations a `String` would make on every one of them.
///
/// `Name` reads like a `&str` (it derefs to `str`, and compares with
/// `str`, `&str` and `String` either way round), and is made with
/// [`From`] / [`Into`] from what a `String` is made from (`&str`,
/// `String`, `Box<str>`, `Cow<str>`, `char`), with `parse`, or in a
/// `const` with [`Name::new_static`]. It serializes as a plain string.
///
/// ```
/// use qtasks::Name;
///
/// let queue: Name = "emails".into();
/// assert_eq!(queue, "emails");
/// assert!(queue.starts_with("email"));
/// let owned: String = queue.to_string();
/// assert_eq!(owned, queue);
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(CompactString);

impl Name {
    /// A name from a `&'static str`, usable in a `const` (never allocates).
    ///
    /// ```
    /// const QUEUE: qtasks::Name = qtasks::Name::new_static("emails");
    /// assert_eq!(QUEUE.as_str(), "emails");
    /// ```
    pub const fn new_static(name: &'static str) -> Self {
        Self(CompactString::const_new(name))
    }

    /// The name as a `&str`.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.0.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.0.as_str(), f)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl From<&str> for Name {
    fn from(name: &str) -> Self {
        Self(CompactString::new(name))
    }
}

impl From<&String> for Name {
    fn from(name: &String) -> Self {
        Self(CompactString::new(name))
    }
}

impl From<String> for Name {
    /// Reuses the string's buffer when the name is too long to be inline.
    fn from(name: String) -> Self {
        Self(CompactString::from(name))
    }
}

impl From<Box<str>> for Name {
    fn from(name: Box<str>) -> Self {
        Self(CompactString::from(name))
    }
}

impl From<&mut str> for Name {
    fn from(name: &mut str) -> Self {
        Self(CompactString::new(&*name))
    }
}

impl From<std::borrow::Cow<'_, str>> for Name {
    fn from(name: std::borrow::Cow<'_, str>) -> Self {
        Self(CompactString::from(name))
    }
}

impl From<char> for Name {
    fn from(c: char) -> Self {
        Self(CompactString::from(c.encode_utf8(&mut [0; 4]) as &str))
    }
}

impl std::str::FromStr for Name {
    type Err = std::convert::Infallible;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(name.into())
    }
}

impl From<&Name> for Name {
    fn from(name: &Name) -> Self {
        name.clone()
    }
}

impl From<Name> for String {
    fn from(name: Name) -> Self {
        name.0.into_string()
    }
}

impl From<&Name> for String {
    fn from(name: &Name) -> Self {
        name.as_str().to_owned()
    }
}

impl AsRef<[u8]> for Name {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Name {
    /// Reads a JSON (or other) string; a short one without allocating,
    /// even when the deserializer cannot lend it.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        CompactString::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::Name;
    use std::collections::HashMap;

    #[test]
    fn reads_compares_and_converts_like_a_string() {
        let name = Name::from("add");
        assert_eq!(name, "add");
        assert_eq!("add", name);
        assert_eq!(name, String::from("add"));
        assert_eq!(name.len(), 3);
        assert_eq!(format!("{name} {name:?}"), "add \"add\"");
        assert_eq!(String::from(name.clone()), "add");
        assert_eq!(Name::default(), "");
        let long = "a task name well past the twenty-four bytes held inline";
        assert_eq!(Name::from(long.to_owned()), long);
        let (a, b) = (Name::from("a"), Name::from("b"));
        assert!(a < b);
        assert_eq!(Name::from('x'), "x");
        assert_eq!(Name::from(std::borrow::Cow::Borrowed("c")), "c");
        assert_eq!("p".parse::<Name>().unwrap(), "p");
        assert_eq!(String::from(&Name::from("r")), "r");
    }

    #[test]
    fn looks_up_by_str_in_maps() {
        let map = HashMap::from([(Name::from("emails"), 1)]);
        assert_eq!(map.get("emails"), Some(&1));
    }

    #[test]
    fn serializes_as_a_plain_string() {
        let name = Name::new_static("default");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"default\"");
        let back: Name = serde_json::from_str("\"default\"").unwrap();
        assert_eq!(back, name);
        assert!(serde_json::from_str::<Name>("3").is_err());
    }
}
