//! Unicode facts shared by the layers: the default-ignorable code points (invisible in
//! rendering, so a classic way to hide or split text), look-alike letters, and the per-character
//! fold the output detectors read ([`fold_char`]).

use unicode_normalization::UnicodeNormalization;

/// `Default_Ignorable_Code_Point` (Unicode DerivedCoreProperties), as inclusive ranges. A test
/// walks every code point against the Unicode tables of the `regex` crate.
pub const DEFAULT_IGNORABLE: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
];

/// Whether `c` is a default-ignorable code point.
pub fn is_default_ignorable(c: char) -> bool {
    let c = c as u32;
    if c < 0xAD {
        return false;
    }
    DEFAULT_IGNORABLE
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Combining marks that attach to a preceding letter (diacritics, overlays).
fn combining_mark(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// Space characters other than U+0020 (no-break, thin, figure, ideographic, ...).
fn other_space(c: char) -> bool {
    matches!(
        c as u32,
        0x00A0 | 0x1680 | 0x2000..=0x200A | 0x202F | 0x205F | 0x3000
    )
}

/// Hyphens that stand in for `-` inside numbers and keys (not the en and em dashes of prose).
fn other_hyphen(c: char) -> bool {
    matches!(c as u32, 0x2010..=0x2012 | 0x2212 | 0xFE63 | 0xFF0D)
}

/// A Cyrillic or Greek letter that looks like a Latin one, case kept.
pub fn latin_lookalike(c: char) -> Option<char> {
    Some(match c {
        // Cyrillic lower case
        'а' => 'a',
        'в' => 'b',
        'с' => 'c',
        'е' | 'ё' => 'e',
        'һ' => 'h',
        'і' | 'ї' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'м' => 'm',
        'о' => 'o',
        'р' => 'p',
        'т' => 't',
        'у' => 'y',
        'х' => 'x',
        'ѕ' => 's',
        'ԁ' => 'd',
        'ԛ' => 'q',
        'ԝ' => 'w',
        // Cyrillic upper case
        'А' => 'A',
        'В' => 'B',
        'С' => 'C',
        'Е' | 'Ё' => 'E',
        'Н' => 'H',
        'І' | 'Ї' => 'I',
        'Ј' => 'J',
        'К' => 'K',
        'М' => 'M',
        'О' => 'O',
        'Р' => 'P',
        'Ѕ' => 'S',
        'Т' => 'T',
        'У' => 'Y',
        'Х' => 'X',
        'Ԛ' => 'Q',
        'Ԝ' => 'W',
        // Greek
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        'ο' => 'o',
        'ν' => 'v',
        'ϲ' => 'c',
        'ɡ' => 'g',
        _ => return None,
    })
}

/// Blocks holding compatibility forms of ASCII (superscripts, letterlike and enclosed forms,
/// ligatures, small, full-width and mathematical forms): only these are normalized.
fn compatibility_block(c: char) -> bool {
    matches!(c as u32,
        0x00AA..=0x00BF
            | 0x2070..=0x24FF
            | 0xFB00..=0xFB4F
            | 0xFE50..=0xFE6F
            | 0xFF00..=0xFFEF
            | 0x1D400..=0x1D7FF
            | 0x1F100..=0x1F1FF)
}

/// What one character reads as to the output detectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fold {
    /// Itself.
    Same,
    /// Nothing: an invisible or combining character.
    Gone,
    /// One ASCII character.
    Ascii(u8),
    /// An ASCII string (compatibility forms such as ligatures).
    Text(String),
}

/// Folds one character: invisible and combining characters vanish, other spaces and hyphens
/// become ASCII ones, full-width and mathematical forms and ligatures become their ASCII
/// compatibility form (NFKC), and look-alike Cyrillic and Greek letters become Latin letters.
/// Characters fold one by one, so a stream folds the same however it is split.
pub fn fold_char(c: char) -> Fold {
    if c.is_ascii() {
        return Fold::Same;
    }
    if is_default_ignorable(c) || combining_mark(c) {
        return Fold::Gone;
    }
    if other_space(c) {
        return Fold::Ascii(b' ');
    }
    if other_hyphen(c) {
        return Fold::Ascii(b'-');
    }
    if let Some(l) = latin_lookalike(c) {
        return Fold::Ascii(l as u8);
    }
    if !compatibility_block(c) {
        return Fold::Same;
    }
    let mut n = std::iter::once(c).nfkc();
    match (n.next(), n.next()) {
        (Some(a), None) if a.is_ascii() => Fold::Ascii(a as u8),
        (Some(a), Some(b)) if a.is_ascii() && b.is_ascii() => {
            let mut s = String::from(a);
            s.push(b);
            for x in n {
                if !x.is_ascii() {
                    return Fold::Same;
                }
                s.push(x);
            }
            Fold::Text(s)
        }
        _ => Fold::Same,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds() {
        assert_eq!(fold_char('a'), Fold::Same);
        assert_eq!(fold_char('\u{200B}'), Fold::Gone);
        assert_eq!(fold_char('\u{FE0F}'), Fold::Gone);
        assert_eq!(fold_char('\u{0301}'), Fold::Gone);
        assert_eq!(fold_char('\u{00A0}'), Fold::Ascii(b' '));
        assert_eq!(fold_char('\u{2011}'), Fold::Ascii(b'-'));
        assert_eq!(fold_char('＠'), Fold::Ascii(b'@'));
        assert_eq!(fold_char('Ａ'), Fold::Ascii(b'A'));
        assert_eq!(fold_char('А'), Fold::Ascii(b'A'));
        assert_eq!(fold_char('𝐀'), Fold::Ascii(b'A'));
        assert_eq!(fold_char('ﬁ'), Fold::Text("fi".into()));
        assert_eq!(fold_char('é'), Fold::Same);
        assert_eq!(fold_char('日'), Fold::Same);
    }

    #[test]
    fn default_ignorable_matches_the_unicode_property() {
        let re = regex::Regex::new(r"^\p{Default_Ignorable_Code_Point}$").unwrap();
        let mut buf = [0u8; 4];
        for cp in 0..=0x10FFFFu32 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            assert_eq!(
                is_default_ignorable(c),
                re.is_match(c.encode_utf8(&mut buf)),
                "U+{cp:04X}"
            );
        }
    }
}
