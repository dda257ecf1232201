//! Helpers shared by the unit tests of several modules.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Writes a zip archive (all a wheel is, as far as fetching and installing care) holding
/// `members`, each a name and its content.
pub fn wheel(path: &Path, members: &[(impl AsRef<str>, impl AsRef<[u8]>)]) {
    let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
    for (name, data) in members {
        zip.start_file(name.as_ref(), zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data.as_ref()).unwrap();
    }
    zip.finish().unwrap();
}

/// The names of the entries of `dir`, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
