//! Generated container names (`adjective_surname`), as Docker makes them.
//!
//! The word lists are those of moby's `namesgenerator` package (Apache-2.0), in its order.

/// Adjectives (moby's `left`).
const LEFT: [&str; 108] = [
    "admiring",
    "adoring",
    "affectionate",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "beautiful",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "competent",
    "condescending",
    "confident",
    "cool",
    "cranky",
    "crazy",
    "dazzling",
    "determined",
    "distracted",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "eloquent",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "flamboyant",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "great",
    "happy",
    "hardcore",
    "heuristic",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "intelligent",
    "interesting",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "naughty",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pedantic",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "recursing",
    "relaxed",
    "reverent",
    "romantic",
    "sad",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "stupefied",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "unruffled",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];

/// Notable scientists and hackers (moby's `right`).
const RIGHT: [&str; 236] = [
    "agnesi",
    "albattani",
    "allen",
    "almeida",
    "antonelli",
    "archimedes",
    "ardinghelli",
    "aryabhata",
    "austin",
    "babbage",
    "banach",
    "banzai",
    "bardeen",
    "bartik",
    "bassi",
    "beaver",
    "bell",
    "benz",
    "bhabha",
    "bhaskara",
    "black",
    "blackburn",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "bouman",
    "boyd",
    "brahmagupta",
    "brattain",
    "brown",
    "buck",
    "burnell",
    "cannon",
    "carson",
    "cartwright",
    "carver",
    "cerf",
    "chandrasekhar",
    "chaplygin",
    "chatelet",
    "chatterjee",
    "chaum",
    "chebyshev",
    "clarke",
    "cohen",
    "colden",
    "cori",
    "cray",
    "curie",
    "curran",
    "darwin",
    "davinci",
    "dewdney",
    "dhawan",
    "diffie",
    "dijkstra",
    "dirac",
    "driscoll",
    "dubinsky",
    "easley",
    "edison",
    "einstein",
    "elbakyan",
    "elgamal",
    "elion",
    "ellis",
    "engelbart",
    "euclid",
    "euler",
    "faraday",
    "feistel",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "gagarin",
    "galileo",
    "galois",
    "ganguly",
    "gates",
    "gauss",
    "germain",
    "goldberg",
    "goldstine",
    "goldwasser",
    "golick",
    "goodall",
    "gould",
    "greider",
    "grothendieck",
    "haibt",
    "hamilton",
    "haslett",
    "hawking",
    "heisenberg",
    "hellman",
    "hermann",
    "herschel",
    "hertz",
    "heyrovsky",
    "hodgkin",
    "hofstadter",
    "hoover",
    "hopper",
    "hugle",
    "hypatia",
    "ishizaka",
    "jackson",
    "jang",
    "jemison",
    "jennings",
    "jepsen",
    "johnson",
    "joliot",
    "jones",
    "kalam",
    "kapitsa",
    "kare",
    "keldysh",
    "keller",
    "kepler",
    "khayyam",
    "khorana",
    "kilby",
    "kirch",
    "knuth",
    "kowalevski",
    "lalande",
    "lamarr",
    "lamport",
    "leakey",
    "leavitt",
    "lederberg",
    "lehmann",
    "lewin",
    "lichterman",
    "liskov",
    "lovelace",
    "lumiere",
    "mahavira",
    "margulis",
    "matsumoto",
    "maxwell",
    "mayer",
    "mccarthy",
    "mcclintock",
    "mclaren",
    "mclean",
    "mcnulty",
    "meitner",
    "mendel",
    "mendeleev",
    "meninsky",
    "merkle",
    "mestorf",
    "mirzakhani",
    "montalcini",
    "moore",
    "morse",
    "moser",
    "murdock",
    "napier",
    "nash",
    "neumann",
    "newton",
    "nightingale",
    "nobel",
    "noether",
    "northcutt",
    "noyce",
    "panini",
    "pare",
    "pascal",
    "pasteur",
    "payne",
    "perlman",
    "pike",
    "poincare",
    "poitras",
    "proskuriakova",
    "ptolemy",
    "raman",
    "ramanujan",
    "rhodes",
    "ride",
    "ritchie",
    "robinson",
    "roentgen",
    "rosalind",
    "rubin",
    "saha",
    "sammet",
    "sanderson",
    "satoshi",
    "shamir",
    "shannon",
    "shaw",
    "shirley",
    "shockley",
    "shtern",
    "sinoussi",
    "snyder",
    "solomon",
    "spence",
    "stonebraker",
    "sutherland",
    "swanson",
    "swartz",
    "swirles",
    "taussig",
    "tesla",
    "tharp",
    "thompson",
    "torvalds",
    "tu",
    "turing",
    "varahamihira",
    "vaughan",
    "villani",
    "visvesvaraya",
    "volhard",
    "wescoff",
    "wilbur",
    "wiles",
    "williams",
    "williamson",
    "wilson",
    "wing",
    "wozniak",
    "wright",
    "wu",
    "yalow",
    "yonath",
    "zhukovsky",
];

/// A random `adjective_surname` as dockerd's `namesgenerator.GetRandomName`: never
/// `boring_wozniak` (Steve Wozniak is not boring); with `retry` > 0 a random digit is appended
/// (`focused_turing3`), for when the first name was taken.
pub fn generate(retry: u32) -> String {
    loop {
        let r = random_u32s();
        let left = LEFT[pick(r[0], LEFT.len())];
        let right = RIGHT[pick(r[1], RIGHT.len())];
        if left == "boring" && right == "wozniak" {
            continue;
        }
        let mut name = format!("{left}_{right}");
        if retry > 0 {
            name.push(char::from(b'0' + pick(r[2], 10) as u8));
        }
        return name;
    }
}

/// Whether a user-given container name is acceptable: Docker's
/// `^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$` (one leading `/` allowed, at least two characters after
/// it). The caller words the refusal: `Invalid container name (x), only [a-zA-Z0-9][a-zA-Z0-9_.-]
/// are allowed`.
pub fn valid(name: &str) -> bool {
    let name = name.strip_prefix('/').unwrap_or(name);
    let bytes = name.as_bytes();
    bytes.len() >= 2
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Three random 32-bit numbers from the system's generator, taken from a v4 UUID's random
/// bytes (bytes 6 and 8 carry the version and variant bits and are left out).
fn random_u32s() -> [u32; 3] {
    let b = uuid::Uuid::new_v4().into_bytes();
    [
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_be_bytes([b[9], b[10], b[11], b[12]]),
        u32::from_be_bytes([b[4], b[5], b[7], b[13]]),
    ]
}

/// Map a random number onto `0..n` (the modulo bias is below 2^-24 for these small n).
fn pick(r: u32, n: usize) -> usize {
    (r as usize) % n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_look_like_dockers() {
        let left: HashSet<&str> = LEFT.iter().copied().collect();
        let right: HashSet<&str> = RIGHT.iter().copied().collect();
        assert_eq!(left.len(), 108);
        assert_eq!(right.len(), 236);
        let mut distinct = HashSet::new();
        for _ in 0..2000 {
            let name = generate(0);
            let (a, b) = name.split_once('_').unwrap();
            assert!(left.contains(a), "{name}");
            assert!(right.contains(b), "{name}");
            assert_ne!(name, "boring_wozniak");
            assert!(valid(&name), "{name}");
            distinct.insert(name);
        }
        assert!(distinct.len() > 1500, "{}", distinct.len());
        let mut digits = HashSet::new();
        for _ in 0..500 {
            let name = generate(1);
            let last = name.chars().last().unwrap();
            assert!(last.is_ascii_digit(), "{name}");
            digits.insert(last);
            let (a, b) = name[..name.len() - 1].split_once('_').unwrap();
            assert!(left.contains(a) && right.contains(b), "{name}");
        }
        assert_eq!(digits.len(), 10);
    }

    #[test]
    fn word_lists_are_mobys() {
        assert_eq!(LEFT[0], "admiring");
        assert_eq!(LEFT[107], "zen");
        assert_eq!(RIGHT[0], "agnesi");
        assert_eq!(RIGHT[235], "zhukovsky");
        assert!(LEFT.windows(2).all(|w| w[0] < w[1]));
        assert!(RIGHT.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn validity() {
        for ok in ["ab", "/ab", "my-app_1.0", "A1", "0x", "web.1"] {
            assert!(valid(ok), "{ok}");
        }
        for bad in [
            "", "a", "/a", "//ab", "_ab", "-ab", ".ab", "a b", "a/b", "ab!", "é1", "ab\n",
        ] {
            assert!(!valid(bad), "{bad}");
        }
    }
}
