//! The Porter stemmer exactly as nltk's `PorterStemmer()` runs it (its default
//! `NLTK_EXTENSIONS` mode), which is what `rouge-score` uses with `use_stemmer=True`.
//!
//! NLTK's mode differs from Porter's 1980 paper in a handful of places, all reproduced here: a
//! small table of irregular forms ("skies" → "sky", "dying" → "die", ...), words of at most two
//! characters left alone, "ies"/"ied" on four-letter words kept as "ie", the "y" → "i" rule only
//! after a consonant that is not the first letter, the "bli" → "ble", "alli" (recursive),
//! "fulli" and "logi" rules of step 2, and a two-letter vowel-consonant word counting as
//! consonant-vowel-consonant.
//!
//! Words are handled as sequences of characters; the conditions speak of Porter's *measure* m,
//! the number of vowel→consonant transitions in a stem.

/// The stem of one word (lowercased first, as nltk does by default).
pub fn stem(word: &str) -> String {
    let lowered = word.to_lowercase();
    if let Some(irregular) = irregular_form(&lowered) {
        return irregular.to_string();
    }
    // nltk tests the length of the word as given, before lowercasing.
    if word.chars().count() <= 2 {
        return lowered;
    }
    let mut w: Vec<char> = lowered.chars().collect();
    w = step1a(w);
    w = step1b(w);
    w = step1c(w);
    w = step2(w);
    w = step3(w);
    w = step4(w);
    w = step5a(w);
    w = step5b(w);
    w.into_iter().collect()
}

fn irregular_form(word: &str) -> Option<&'static str> {
    Some(match word {
        "sky" | "skies" => "sky",
        "dying" => "die",
        "lying" => "lie",
        "tying" => "tie",
        "news" => "news",
        "innings" | "inning" => "inning",
        "outings" | "outing" => "outing",
        "cannings" | "canning" => "canning",
        "howe" => "howe",
        "proceed" => "proceed",
        "exceed" => "exceed",
        "succeed" => "succeed",
        _ => return None,
    })
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

/// Per character: is it a consonant? "y" is a consonant at the start and after a vowel, a
/// vowel after a consonant.
fn consonant_flags(word: &[char]) -> Vec<bool> {
    let mut flags: Vec<bool> = Vec::with_capacity(word.len());
    for (i, &c) in word.iter().enumerate() {
        let consonant = if is_vowel(c) {
            false
        } else if c == 'y' {
            i == 0 || !flags[i - 1]
        } else {
            true
        };
        flags.push(consonant);
    }
    flags
}

fn is_consonant(word: &[char], i: usize) -> bool {
    consonant_flags(word)[i]
}

/// Porter's m: the number of vowel-then-consonant pairs.
fn measure(stem: &[char]) -> usize {
    consonant_flags(stem)
        .windows(2)
        .filter(|pair| !pair[0] && pair[1])
        .count()
}

fn contains_vowel(stem: &[char]) -> bool {
    consonant_flags(stem).iter().any(|c| !c)
}

fn ends_double_consonant(word: &[char]) -> bool {
    let n = word.len();
    n >= 2 && word[n - 1] == word[n - 2] && is_consonant(word, n - 1)
}

/// Consonant-vowel-consonant ending whose last letter is not w, x or y (or, in nltk's mode, a
/// two-letter vowel-consonant word).
fn ends_cvc(word: &[char]) -> bool {
    let n = word.len();
    let flags = consonant_flags(word);
    (n >= 3
        && flags[n - 3]
        && !flags[n - 2]
        && flags[n - 1]
        && !matches!(word[n - 1], 'w' | 'x' | 'y'))
        || (n == 2 && !flags[0] && flags[1])
}

fn ends_with(word: &[char], suffix: &str) -> bool {
    let suffix: Vec<char> = suffix.chars().collect();
    word.ends_with(&suffix)
}

/// `word` without its last `suffix_len` characters.
fn without(word: &[char], suffix_len: usize) -> Vec<char> {
    word[..word.len() - suffix_len].to_vec()
}

fn with_suffix(mut stem: Vec<char>, suffix: &str) -> Vec<char> {
    stem.extend(suffix.chars());
    stem
}

type Condition<'a> = &'a dyn Fn(&[char]) -> bool;

/// nltk's `_apply_rule_list`: the first rule whose suffix matches decides; if its condition on
/// the remaining stem fails, the word is left as it is (later rules are not tried).
fn apply_rules(word: Vec<char>, rules: &[(&str, &str, Option<Condition<'_>>)]) -> Vec<char> {
    for (suffix, replacement, condition) in rules {
        if ends_with(&word, suffix) {
            let stem = without(&word, suffix.chars().count());
            return if condition.is_none_or(|holds| holds(&stem)) {
                with_suffix(stem, replacement)
            } else {
                word
            };
        }
    }
    word
}

fn positive_measure(stem: &[char]) -> bool {
    measure(stem) > 0
}

fn measure_above_one(stem: &[char]) -> bool {
    measure(stem) > 1
}

/// Plurals: sses → ss, ies → i (ie for four-letter words), ss → ss, s → "".
fn step1a(word: Vec<char>) -> Vec<char> {
    if word.len() == 4 && ends_with(&word, "ies") {
        return with_suffix(without(&word, 3), "ie");
    }
    apply_rules(
        word,
        &[
            ("sses", "ss", None),
            ("ies", "i", None),
            ("ss", "ss", None),
            ("s", "", None),
        ],
    )
}

/// Past tenses and gerunds: ied, eed, ed, ing, then the repairs (at → ate, hopp → hop, ...).
fn step1b(word: Vec<char>) -> Vec<char> {
    if ends_with(&word, "ied") {
        let replacement = if word.len() == 4 { "ie" } else { "i" };
        return with_suffix(without(&word, 3), replacement);
    }
    if ends_with(&word, "eed") {
        let stem = without(&word, 3);
        return if measure(&stem) > 0 {
            with_suffix(stem, "ee")
        } else {
            word
        };
    }
    let mut intermediate = None;
    for suffix in ["ed", "ing"] {
        if ends_with(&word, suffix) {
            let stem = without(&word, suffix.len());
            if contains_vowel(&stem) {
                intermediate = Some(stem);
                break;
            }
        }
    }
    let Some(stem) = intermediate else {
        return word;
    };
    for (suffix, replacement) in [("at", "ate"), ("bl", "ble"), ("iz", "ize")] {
        if ends_with(&stem, suffix) {
            return with_suffix(without(&stem, 2), replacement);
        }
    }
    if ends_double_consonant(&stem) {
        let last = stem[stem.len() - 1];
        return if matches!(last, 'l' | 's' | 'z') {
            stem
        } else {
            without(&stem, 1)
        };
    }
    if measure(&stem) == 1 && ends_cvc(&stem) {
        return with_suffix(stem, "e");
    }
    stem
}

/// y → i after a consonant that is not the first letter.
fn step1c(word: Vec<char>) -> Vec<char> {
    let after_consonant = |stem: &[char]| stem.len() > 1 && is_consonant(stem, stem.len() - 1);
    apply_rules(word, &[("y", "i", Some(&after_consonant))])
}

/// Double suffixes to single ones (ational → ate, iveness → ive, ...), when m > 0.
fn step2(word: Vec<char>) -> Vec<char> {
    if ends_with(&word, "alli") && positive_measure(&without(&word, 4)) {
        return step2(with_suffix(without(&word, 4), "al"));
    }
    let m: Condition<'_> = &positive_measure;
    // "logi" → "log" looks at the word without "ogi" (the stem keeps its "l").
    let logi_stem = if word.len() >= 3 {
        without(&word, 3)
    } else {
        Vec::new()
    };
    let logi = move |_: &[char]| positive_measure(&logi_stem);
    apply_rules(
        word,
        &[
            ("ational", "ate", Some(m)),
            ("tional", "tion", Some(m)),
            ("enci", "ence", Some(m)),
            ("anci", "ance", Some(m)),
            ("izer", "ize", Some(m)),
            ("bli", "ble", Some(m)),
            ("alli", "al", Some(m)),
            ("entli", "ent", Some(m)),
            ("eli", "e", Some(m)),
            ("ousli", "ous", Some(m)),
            ("ization", "ize", Some(m)),
            ("ation", "ate", Some(m)),
            ("ator", "ate", Some(m)),
            ("alism", "al", Some(m)),
            ("iveness", "ive", Some(m)),
            ("fulness", "ful", Some(m)),
            ("ousness", "ous", Some(m)),
            ("aliti", "al", Some(m)),
            ("iviti", "ive", Some(m)),
            ("biliti", "ble", Some(m)),
            ("fulli", "ful", Some(m)),
            ("logi", "log", Some(&logi)),
        ],
    )
}

/// -ic-, -full, -ness, ... when m > 0.
fn step3(word: Vec<char>) -> Vec<char> {
    let m: Condition<'_> = &positive_measure;
    apply_rules(
        word,
        &[
            ("icate", "ic", Some(m)),
            ("ative", "", Some(m)),
            ("alize", "al", Some(m)),
            ("iciti", "ic", Some(m)),
            ("ical", "ic", Some(m)),
            ("ful", "", Some(m)),
            ("ness", "", Some(m)),
        ],
    )
}

/// Drop remaining suffixes when m > 1 (-ion only after s or t).
fn step4(word: Vec<char>) -> Vec<char> {
    let m: Condition<'_> = &measure_above_one;
    let ion = |stem: &[char]| measure(stem) > 1 && matches!(stem.last(), Some('s' | 't'));
    apply_rules(
        word,
        &[
            ("al", "", Some(m)),
            ("ance", "", Some(m)),
            ("ence", "", Some(m)),
            ("er", "", Some(m)),
            ("ic", "", Some(m)),
            ("able", "", Some(m)),
            ("ible", "", Some(m)),
            ("ant", "", Some(m)),
            ("ement", "", Some(m)),
            ("ment", "", Some(m)),
            ("ent", "", Some(m)),
            ("ion", "", Some(&ion)),
            ("ou", "", Some(m)),
            ("ism", "", Some(m)),
            ("ate", "", Some(m)),
            ("iti", "", Some(m)),
            ("ous", "", Some(m)),
            ("ive", "", Some(m)),
            ("ize", "", Some(m)),
        ],
    )
}

/// A final -e goes when m > 1, or m = 1 and the stem does not end consonant-vowel-consonant.
fn step5a(word: Vec<char>) -> Vec<char> {
    if ends_with(&word, "e") {
        let stem = without(&word, 1);
        let m = measure(&stem);
        if m > 1 || (m == 1 && !ends_cvc(&stem)) {
            return stem;
        }
    }
    word
}

/// -ll → -l when m > 1 (measured on the word minus one "l").
fn step5b(word: Vec<char>) -> Vec<char> {
    if ends_with(&word, "ll") && measure(&without(&word, 1)) > 1 {
        return without(&word, 1);
    }
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_examples() {
        for (word, expected) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("hopping", "hop"),
            ("falling", "fall"),
            ("relational", "relat"),
            ("generalization", "gener"),
            ("skies", "sky"),
            ("is", "is"),
        ] {
            assert_eq!(stem(word), expected, "{word}");
        }
    }
}
