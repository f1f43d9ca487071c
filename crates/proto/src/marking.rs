//! Handling markings: the catalogue of markings Valise knows, the
//! structured [`Label`] a letter carries inside its encryption, and the
//! partial order "dominates" that conversation ceilings and accreditations
//! are checked with.
//!
//! A label is a catalogue marking (a policy and a level within it), a set
//! of caveats and an optional releasability list (REL TO). Users write it
//! as text, `MARKING[//CAVEAT]...[//REL TO A, B]`, e.g.
//! `EU RESTRICTED//REL TO CZE, FRA`; a marking outside the catalogue is
//! refused, never carried as free text.
//!
//! # Dominance
//!
//! `a` dominates `b` (a holder cleared for `a` may read `b`; a ceiling `a`
//! admits `b`) when all three hold:
//! - `a`'s marking dominates `b`'s: equal, or reachable through the
//!   catalogue's `covers` edges (below);
//! - `a`'s caveats include all of `b`'s;
//! - `a` is released to no more than `b`: no REL TO on `b`, or REL TO on
//!   both with `a`'s list inside `b`'s. An accreditation therefore names in
//!   its REL TO its holder's nationality or organisation; one without REL TO
//!   covers only letters without REL TO.
//!
//! The markings' own order, decided here and documented in
//! docs/PROTOCOL.md ("Handling markings"):
//! - TLP 2.0 is a chain: CLEAR < GREEN < AMBER < AMBER+STRICT < RED.
//! - LIMITE covers TLP:AMBER; SENSITIVE covers LIMITE; RESTREINT UE/EU
//!   RESTRICTED covers SENSITIVE. So an EU RESTRICTED accreditation covers
//!   SENSITIVE, LIMITE and TLP up to AMBER.
//! - NATO RESTRICTED, VYHRAZENÉ, DIFFUSION RESTREINTE and VS-NfD each cover
//!   TLP:AMBER (and so GREEN and CLEAR) and nothing else.
//! - No classified marking covers another (the national equivalence tables
//!   are for a security officer to apply by accrediting for each), nor
//!   TLP:AMBER+STRICT or TLP:RED, whose limits are on the audience, not the
//!   clearance: only an accreditation for them (or RED for AMBER+STRICT)
//!   covers them.
//!
//! Reading TLP:CLEAR or TLP:GREEN (with no caveat nor REL TO) takes no
//! accreditation ([`Label::needs_accreditation`]); every other label does.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Why text or bytes are not a label. Never quotes the input: a marking
/// is letter content (I1) and errors reach alerts and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkingError {
    #[error("unknown marking (`valise markings` prints the catalogue)")]
    Unknown,
    #[error(
        "a caveat is 1 to {MAX_CAVEAT_BYTES} characters of A-Z, 0-9, space and '-', \
         at most {MAX_CAVEATS} of them"
    )]
    Caveat,
    #[error(
        "REL TO names 1 to {MAX_REL_TO} codes of 2 to 4 letters A-Z (e.g. CZE, FRA, EU, NATO), \
         once"
    )]
    RelTo,
    #[error("label is not in its one canonical CBOR encoding: {0}")]
    Encoding(&'static str),
}

/// Most caveats on one label.
pub const MAX_CAVEATS: usize = 8;
/// Longest caveat.
pub const MAX_CAVEAT_BYTES: usize = 32;
/// Most codes in one REL TO list.
pub const MAX_REL_TO: usize = 32;
/// Largest label encoding read at all (the largest valid one is far less).
pub const MAX_LABEL_BYTES: usize = 1024;

/// A marking of the catalogue. The order of the variants is the order of
/// [`CATALOGUE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Marking {
    TlpClear,
    TlpGreen,
    TlpAmber,
    TlpAmberStrict,
    TlpRed,
    EuLimite,
    EuSensitive,
    EuRestricted,
    NatoRestricted,
    Vyhrazene,
    DiffusionRestreinte,
    VsNfd,
}

/// One marking of the catalogue, as `valise markings` prints it.
#[derive(Debug)]
pub struct Entry {
    pub marking: Marking,
    /// Who defines it (`TLP`, `EU`, `NATO`, `CZ`, `FR`, `DE`): on the wire.
    pub policy: &'static str,
    /// Its level within the policy: on the wire.
    pub level: &'static str,
    /// Its full name.
    pub name: &'static str,
    /// How a letter shows it, as a subject prefix `[short]`.
    pub short: &'static str,
    /// Other ways users write it (compared ignoring case and accents).
    pub aliases: &'static [&'static str],
    /// The markings it directly dominates.
    pub covers: &'static [Marking],
}

use Marking::*;

/// Every marking Valise knows, in the order of [`Marking`]'s variants.
pub const CATALOGUE: &[Entry] = &[
    Entry {
        marking: TlpClear,
        policy: "TLP",
        level: "CLEAR",
        name: "TLP:CLEAR",
        short: "TLP:CLEAR",
        aliases: &["TLP:WHITE"],
        covers: &[],
    },
    Entry {
        marking: TlpGreen,
        policy: "TLP",
        level: "GREEN",
        name: "TLP:GREEN",
        short: "TLP:GREEN",
        aliases: &[],
        covers: &[TlpClear],
    },
    Entry {
        marking: TlpAmber,
        policy: "TLP",
        level: "AMBER",
        name: "TLP:AMBER",
        short: "TLP:AMBER",
        aliases: &[],
        covers: &[TlpGreen],
    },
    Entry {
        marking: TlpAmberStrict,
        policy: "TLP",
        level: "AMBER+STRICT",
        name: "TLP:AMBER+STRICT",
        short: "TLP:AMBER+STRICT",
        aliases: &[],
        covers: &[TlpAmber],
    },
    Entry {
        marking: TlpRed,
        policy: "TLP",
        level: "RED",
        name: "TLP:RED",
        short: "TLP:RED",
        aliases: &[],
        covers: &[TlpAmberStrict],
    },
    Entry {
        marking: EuLimite,
        policy: "EU",
        level: "LIMITE",
        name: "LIMITE",
        short: "LIMITE",
        aliases: &["EU LIMITE"],
        covers: &[TlpAmber],
    },
    Entry {
        marking: EuSensitive,
        policy: "EU",
        level: "SENSITIVE",
        name: "SENSITIVE",
        short: "SENSITIVE",
        aliases: &["EU SENSITIVE"],
        covers: &[EuLimite],
    },
    Entry {
        marking: EuRestricted,
        policy: "EU",
        level: "RESTRICTED",
        name: "RESTREINT UE/EU RESTRICTED",
        short: "EU RESTRICTED",
        aliases: &["EU RESTRICTED", "RESTREINT UE", "R-UE/EU-R"],
        covers: &[EuSensitive],
    },
    Entry {
        marking: NatoRestricted,
        policy: "NATO",
        level: "RESTRICTED",
        name: "NATO RESTRICTED",
        short: "NATO RESTRICTED",
        aliases: &["NR"],
        covers: &[TlpAmber],
    },
    Entry {
        marking: Vyhrazene,
        policy: "CZ",
        level: "VYHRAZENE",
        name: "VYHRAZENÉ",
        short: "VYHRAZENÉ",
        aliases: &[],
        covers: &[TlpAmber],
    },
    Entry {
        marking: DiffusionRestreinte,
        policy: "FR",
        level: "DR",
        name: "DIFFUSION RESTREINTE",
        short: "DIFFUSION RESTREINTE",
        aliases: &["DR"],
        covers: &[TlpAmber],
    },
    Entry {
        marking: VsNfd,
        policy: "DE",
        level: "VS-NFD",
        name: "VS-NUR FÜR DEN DIENSTGEBRAUCH",
        short: "VS-NfD",
        aliases: &["VS-NfD"],
        covers: &[TlpAmber],
    },
];

impl Marking {
    /// Its catalogue entry.
    pub fn entry(self) -> &'static Entry {
        // The catalogue is in variant order (a test checks it).
        &CATALOGUE[self as usize]
    }

    /// The marking the user's text names, by its name, short name or an
    /// alias, ignoring case, accents and spacing.
    pub fn parse(text: &str) -> Result<Self, MarkingError> {
        let want = fold(text);
        CATALOGUE
            .iter()
            .find(|e| {
                [e.name, e.short]
                    .iter()
                    .chain(e.aliases)
                    .any(|n| fold(n) == want)
            })
            .map(|e| e.marking)
            .ok_or(MarkingError::Unknown)
    }

    /// Whether a holder cleared for `self` may read `other` (see the
    /// module doc).
    pub fn dominates(self, other: Marking) -> bool {
        self == other || self.entry().covers.iter().any(|m| m.dominates(other))
    }

    fn from_wire(policy: &str, level: &str) -> Result<Self, MarkingError> {
        CATALOGUE
            .iter()
            .find(|e| e.policy == policy && e.level == level)
            .map(|e| e.marking)
            .ok_or(MarkingError::Unknown)
    }
}

/// Text compared for a marking name: upper case, no accents, one space
/// between words, none around `:` and `/`, and `TLP AMBER` as `TLP:AMBER`.
fn fold(text: &str) -> String {
    let upper: String = text
        .to_uppercase()
        .chars()
        .filter(|c| !matches!(c, '\u{301}' | '\u{308}'))
        .map(|c| match c {
            'É' => 'E',
            'Ü' => 'U',
            c => c,
        })
        .collect();
    let words = upper.split_whitespace().collect::<Vec<_>>().join(" ");
    let tight = words
        .replace(" :", ":")
        .replace(": ", ":")
        .replace(" /", "/")
        .replace("/ ", "/");
    match tight.strip_prefix("TLP ") {
        Some(rest) => format!("TLP:{rest}"),
        None => tight,
    }
}

/// A caveat: upper-case ASCII letters, digits, single spaces and `-`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Caveat(String);

/// One REL TO code: 2 to 4 upper-case ASCII letters (ISO 3166 codes, EU,
/// NATO).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelTo(String);

impl Caveat {
    pub fn parse(text: &str) -> Result<Self, MarkingError> {
        let s = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let s = s.to_ascii_uppercase();
        Self::exact(s)
    }

    /// As it is on the wire: already in its one form.
    fn exact(s: String) -> Result<Self, MarkingError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_CAVEAT_BYTES
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' || b == b'-')
            && !s.starts_with(' ')
            && !s.ends_with(' ')
            && !s.contains("  ")
            && !s.starts_with("REL TO");
        if ok {
            Ok(Self(s))
        } else {
            Err(MarkingError::Caveat)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl RelTo {
    pub fn parse(text: &str) -> Result<Self, MarkingError> {
        Self::exact(text.trim().to_ascii_uppercase())
    }

    fn exact(s: String) -> Result<Self, MarkingError> {
        if (2..=4).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(s))
        } else {
            Err(MarkingError::RelTo)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A handling label: a catalogue marking, caveats and releasability.
/// Built only from a catalogue marking or by parsing, so always valid.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "LabelWire", into = "LabelWire")]
pub struct Label {
    marking: Marking,
    caveats: BTreeSet<Caveat>,
    /// `None`: no release restriction.
    rel_to: Option<BTreeSet<RelTo>>,
}

impl From<Marking> for Label {
    fn from(marking: Marking) -> Self {
        Self {
            marking,
            caveats: BTreeSet::new(),
            rel_to: None,
        }
    }
}

impl Label {
    /// Parses the user's text: `MARKING[//CAVEAT]...[//REL TO A, B]`.
    pub fn parse(text: &str) -> Result<Self, MarkingError> {
        let mut parts = text.split("//");
        let marking = Marking::parse(parts.next().unwrap_or_default())?;
        let mut caveats = BTreeSet::new();
        let mut rel_to = None;
        for part in parts {
            let upper = part.trim().to_ascii_uppercase();
            match upper.strip_prefix("REL TO") {
                Some(list) if rel_to.is_none() => {
                    let codes = list
                        .split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|c| !c.is_empty())
                        .map(RelTo::parse)
                        .collect::<Result<BTreeSet<_>, _>>()?;
                    rel_to = Some(codes);
                }
                Some(_) => return Err(MarkingError::RelTo),
                None => {
                    caveats.insert(Caveat::parse(part)?);
                }
            }
        }
        Self::new(marking, caveats, rel_to)
    }

    /// A label from its parts, within the limits.
    pub fn new(
        marking: Marking,
        caveats: BTreeSet<Caveat>,
        rel_to: Option<BTreeSet<RelTo>>,
    ) -> Result<Self, MarkingError> {
        if caveats.len() > MAX_CAVEATS {
            return Err(MarkingError::Caveat);
        }
        if rel_to
            .as_ref()
            .is_some_and(|r| r.is_empty() || r.len() > MAX_REL_TO)
        {
            return Err(MarkingError::RelTo);
        }
        Ok(Self {
            marking,
            caveats,
            rel_to,
        })
    }

    pub fn marking(&self) -> Marking {
        self.marking
    }

    pub fn caveats(&self) -> &BTreeSet<Caveat> {
        &self.caveats
    }

    pub fn rel_to(&self) -> Option<&BTreeSet<RelTo>> {
        self.rel_to.as_ref()
    }

    /// Whether reading it takes an accreditation: anything TLP:GREEN does
    /// not dominate (TLP:CLEAR and TLP:GREEN, with no caveat nor REL TO,
    /// are for anyone in the community).
    pub fn needs_accreditation(&self) -> bool {
        !Label::from(Marking::TlpGreen).dominates(self)
    }

    /// Whether a holder cleared for `self` may read `other`, or a ceiling
    /// `self` admits `other` (see the module doc).
    pub fn dominates(&self, other: &Label) -> bool {
        self.marking.dominates(other.marking)
            && self.caveats.is_superset(&other.caveats)
            && match (&self.rel_to, &other.rel_to) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some(a), Some(b)) => a.is_subset(b),
            }
    }

    /// The canonical CBOR encoding (RFC 8949 §4.2.1: a map with its keys
    /// in order, sets sorted): one label, one encoding.
    pub fn to_cbor(&self) -> Result<Vec<u8>, MarkingError> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out)
            .map_err(|_| MarkingError::Encoding("cannot encode"))?;
        Ok(out)
    }

    /// Decodes a label, refusing every encoding but the canonical one.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, MarkingError> {
        if bytes.len() > MAX_LABEL_BYTES {
            return Err(MarkingError::Encoding("too large"));
        }
        let label: Label = ciborium::from_reader(bytes)
            .map_err(|_| MarkingError::Encoding("not a label record"))?;
        if label.to_cbor()? != bytes {
            return Err(MarkingError::Encoding("not the canonical encoding"));
        }
        Ok(label)
    }
}

/// Shown as the user writes it, with the marking's short name.
impl Label {
    /// How a subject line shows the label, in every front end (the CLI, the
    /// mail bridge): `[EU RESTRICTED] `.
    pub fn subject_prefix(&self) -> String {
        format!("[{self}] ")
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.marking.entry().short)?;
        for c in &self.caveats {
            write!(f, "//{}", c.0)?;
        }
        if let Some(rel) = &self.rel_to {
            let codes: Vec<&str> = rel.iter().map(RelTo::as_str).collect();
            write!(f, "//REL TO {}", codes.join(", "))?;
        }
        Ok(())
    }
}

/// Catalogue markings are public; caveats and REL TO may name a programme
/// or a partner, so only their counts are shown.
impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Label")
            .field("marking", &self.marking)
            .field("caveats", &self.caveats.len())
            .field("rel_to", &self.rel_to.as_ref().map(BTreeSet::len))
            .finish()
    }
}

/// The label on the wire: `{? "c": [caveat...], "l": level, "p": policy,
/// ? "r": [code...]}`, keys in canonical order, lists sorted and unique.
/// Unknown keys are refused: a restriction not understood is not ignored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelWire {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    c: Vec<String>,
    l: String,
    p: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<Vec<String>>,
}

impl From<Label> for LabelWire {
    fn from(l: Label) -> Self {
        let entry = l.marking.entry();
        Self {
            c: l.caveats.into_iter().map(|c| c.0).collect(),
            l: entry.level.into(),
            p: entry.policy.into(),
            r: l.rel_to.map(|r| r.into_iter().map(|c| c.0).collect()),
        }
    }
}

impl TryFrom<LabelWire> for Label {
    type Error = MarkingError;

    fn try_from(w: LabelWire) -> Result<Self, MarkingError> {
        let marking = Marking::from_wire(&w.p, &w.l)?;
        let caveats = sorted_set(w.c, Caveat::exact, MarkingError::Caveat)?;
        let rel_to =
            w.r.map(|r| sorted_set(r, RelTo::exact, MarkingError::RelTo))
                .transpose()?;
        Self::new(marking, caveats, rel_to)
    }
}

/// A set from a list that must already be sorted and without repeats.
fn sorted_set<T: Ord>(
    items: Vec<String>,
    parse: fn(String) -> Result<T, MarkingError>,
    err: MarkingError,
) -> Result<BTreeSet<T>, MarkingError> {
    if !items.windows(2).all(|w| w[0] < w[1]) {
        return Err(err);
    }
    items.into_iter().map(parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn catalogue_is_in_variant_order_and_names_are_unique() {
        let mut names = BTreeSet::new();
        let mut wire = BTreeSet::new();
        for (i, e) in CATALOGUE.iter().enumerate() {
            assert_eq!(e.marking as usize, i, "{}", e.name);
            let own: BTreeSet<String> = [e.name, e.short]
                .iter()
                .chain(e.aliases)
                .map(|n| fold(n))
                .collect();
            for n in own {
                assert!(names.insert(n.clone()), "{n} names two markings");
            }
            assert!(wire.insert((e.policy, e.level)));
        }
    }

    #[test]
    fn parses_names_aliases_and_spellings() {
        for (text, m) in [
            ("EU RESTRICTED", EuRestricted),
            ("RESTREINT UE/EU RESTRICTED", EuRestricted),
            ("restreint ue / eu restricted", EuRestricted),
            ("tlp:amber+strict", TlpAmberStrict),
            ("TLP AMBER", TlpAmber),
            ("TLP: RED", TlpRed),
            ("Vyhrazené", Vyhrazene),
            ("VYHRAZENE", Vyhrazene),
            ("VYHRAZE\u{301}NE", Vyhrazene),
            ("VS-NfD", VsNfd),
            ("VS-Nur für den Dienstgebrauch", VsNfd),
            ("EU LIMITE", EuLimite),
            ("Diffusion  Restreinte", DiffusionRestreinte),
        ] {
            assert_eq!(Marking::parse(text), Ok(m), "{text}");
        }
        for bad in ["", "SECRET", "TLP:PURPLE", "EU", "RESTRICTED", "TOP SECRET"] {
            assert_eq!(Marking::parse(bad), Err(MarkingError::Unknown), "{bad}");
        }
    }

    #[test]
    fn labels_parse_with_caveats_and_rel_to() {
        let l = Label::parse("eu restricted//crypto//REL TO fra, CZE").unwrap();
        assert_eq!(l.marking(), EuRestricted);
        assert_eq!(l.to_string(), "EU RESTRICTED//CRYPTO//REL TO CZE, FRA");
        assert_eq!(Label::parse(&l.to_string()).unwrap(), l);
        assert_eq!(
            Label::parse("SECRET//REL TO FRA"),
            Err(MarkingError::Unknown)
        );
        assert_eq!(Label::parse("LIMITE//REL TO"), Err(MarkingError::RelTo));
        assert_eq!(
            Label::parse("LIMITE//REL TO FRANCE"),
            Err(MarkingError::RelTo)
        );
        assert_eq!(
            Label::parse("LIMITE//REL TO FRA//REL TO CZE"),
            Err(MarkingError::RelTo)
        );
        assert_eq!(Label::parse("LIMITE//"), Err(MarkingError::Caveat));
        assert_eq!(Label::parse("LIMITE//a_b"), Err(MarkingError::Caveat));
        // The error never quotes what was written.
        let err = Label::parse("the minister resigns")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("minister") && err.contains("valise markings"));
    }

    #[test]
    fn the_documented_order() {
        let covers = |a: Marking, b: Marking| Label::from(a).dominates(&Label::from(b));
        assert!(covers(EuRestricted, EuSensitive));
        assert!(covers(EuRestricted, EuLimite));
        assert!(covers(EuRestricted, TlpAmber));
        assert!(covers(EuRestricted, TlpClear));
        assert!(!covers(EuRestricted, TlpAmberStrict));
        assert!(!covers(EuRestricted, TlpRed));
        assert!(!covers(EuRestricted, NatoRestricted));
        assert!(!covers(NatoRestricted, EuRestricted));
        assert!(!covers(EuLimite, EuRestricted));
        assert!(!covers(TlpRed, EuLimite));
        assert!(covers(TlpRed, TlpClear));
        assert!(covers(VsNfd, TlpGreen));
        assert!(!covers(TlpAmber, TlpAmberStrict));
        let restricted = Label::parse("EU RESTRICTED").unwrap();
        let crypto = Label::parse("EU RESTRICTED//CRYPTO").unwrap();
        let to_cze = Label::parse("EU RESTRICTED//REL TO CZE").unwrap();
        let to_cze_fra = Label::parse("EU RESTRICTED//REL TO CZE, FRA").unwrap();
        assert!(crypto.dominates(&restricted) && !restricted.dominates(&crypto));
        assert!(to_cze.dominates(&to_cze_fra) && !to_cze_fra.dominates(&to_cze));
        assert!(to_cze.dominates(&restricted) && !restricted.dominates(&to_cze));
        let needs = |t: &str| Label::parse(t).unwrap().needs_accreditation();
        assert!(!needs("TLP:CLEAR") && !needs("TLP:GREEN"));
        assert!(needs("TLP:AMBER") && needs("LIMITE") && needs("EU RESTRICTED"));
        assert!(needs("TLP:GREEN//REL TO CZE") && needs("TLP:CLEAR//CRYPTO"));
    }

    #[test]
    fn canonical_cbor_only() {
        let l = Label::parse("EU RESTRICTED//CRYPTO//REL TO CZE, FRA").unwrap();
        let bytes = l.to_cbor().unwrap();
        assert_eq!(Label::from_cbor(&bytes).unwrap(), l);
        // The same label with its keys in another order.
        let mut swapped = Vec::new();
        let value = ciborium::Value::Map(vec![
            ("p".into(), "EU".into()),
            ("l".into(), "RESTRICTED".into()),
        ]);
        ciborium::into_writer(&value, &mut swapped).unwrap();
        assert!(ciborium::from_reader::<Label, _>(&swapped[..]).is_ok());
        assert!(Label::from_cbor(&swapped).is_err());
        // Unsorted REL TO, unknown level, unknown key.
        for value in [
            vec![
                ("l", "RESTRICTED".into()),
                ("p", "EU".into()),
                (
                    "r",
                    ciborium::Value::Array(vec!["FRA".into(), "CZE".into()]),
                ),
            ],
            vec![("l", "SECRET".into()), ("p", "EU".into())],
            vec![
                ("l", "RESTRICTED".into()),
                ("p", "EU".into()),
                ("x", "1".into()),
            ],
        ] {
            let map = ciborium::Value::Map(
                value
                    .into_iter()
                    .map(|(k, v): (&str, ciborium::Value)| (k.into(), v))
                    .collect(),
            );
            let mut out = Vec::new();
            ciborium::into_writer(&map, &mut out).unwrap();
            assert!(Label::from_cbor(&out).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Label::from_cbor(&long).is_err());
    }

    #[test]
    fn debug_hides_caveats_and_rel_to() {
        let l = Label::parse("EU RESTRICTED//OPERATION NIGHTJAR//REL TO CZE").unwrap();
        let s = format!("{l:?}");
        assert!(!s.contains("NIGHTJAR") && !s.contains("CZE"), "{s}");
    }

    fn marking() -> impl Strategy<Value = Marking> {
        (0..CATALOGUE.len()).prop_map(|i| CATALOGUE[i].marking)
    }

    fn label() -> impl Strategy<Value = Label> {
        let caveat = prop::sample::select(vec!["CRYPTO", "ATOMAL", "EYES ONLY", "X-1"]);
        let code = prop::sample::select(vec!["CZE", "FRA", "DEU", "EU", "NATO"]);
        (
            marking(),
            prop::collection::btree_set(caveat, 0..3),
            prop::option::of(prop::collection::btree_set(code, 1..4)),
        )
            .prop_map(|(m, c, r)| {
                Label::new(
                    m,
                    c.into_iter().map(|c| Caveat::parse(c).unwrap()).collect(),
                    r.map(|r| r.into_iter().map(|c| RelTo::parse(c).unwrap()).collect()),
                )
                .unwrap()
            })
    }

    proptest! {
        #[test]
        fn text_and_cbor_round_trip(l in label()) {
            prop_assert_eq!(Label::parse(&l.to_string()).unwrap(), l.clone());
            prop_assert_eq!(Label::from_cbor(&l.to_cbor().unwrap()).unwrap(), l);
        }

        #[test]
        fn dominance_is_a_partial_order(a in label(), b in label(), c in label()) {
            prop_assert!(a.dominates(&a));
            if a.dominates(&b) && b.dominates(&a) {
                prop_assert_eq!(&a, &b);
            }
            if a.dominates(&b) && b.dominates(&c) {
                prop_assert!(a.dominates(&c));
            }
        }

        #[test]
        fn decoding_any_bytes_never_panics_and_accepts_one_form(
            b in prop::collection::vec(any::<u8>(), 0..256)
        ) {
            if let Ok(l) = Label::from_cbor(&b) {
                prop_assert_eq!(l.to_cbor().unwrap(), b);
            }
        }

        #[test]
        fn parsing_any_text_never_panics(s in ".{0,80}") {
            let _ = Label::parse(&s);
        }
    }
}
