//! The house rules of `src/`, checked from the code itself: a module imports
//! only modules that `lib.rs`'s map lists above it (so there is no import
//! cycle and none runs back up), and no source file outgrows 600 lines.

use std::{collections::HashMap, fs, path::Path};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
/// Past this a room owns more than one noun; split it.
const MAX_LINES: usize = 600;

/// The modules of the map in `lib.rs`, ground floor first, by rank.
fn floors() -> HashMap<String, usize> {
    let lib = fs::read_to_string(Path::new(SRC).join("lib.rs")).expect("lib.rs");
    let floors: HashMap<String, usize> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("//! - [`")?.split('`').next())
        .enumerate()
        .map(|(rank, name)| (name.to_owned(), rank))
        .collect();
    let declared = lib.lines().filter(|l| l.starts_with("pub mod ")).count();
    assert_eq!(
        floors.len(),
        declared,
        "lib.rs's map names every module once"
    );
    floors
}

/// Every `.rs` file under `dir`, with its path relative to `src/`.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(SRC).expect("under src");
            let text = fs::read_to_string(&path).expect("source is UTF-8");
            out.push((relative.to_string_lossy().into_owned(), text));
        }
    }
}

/// The top-level modules a file names as `crate::<module>`.
fn crate_references(text: &str) -> Vec<&str> {
    text.match_indices("crate::")
        .filter(|(at, _)| !text[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .filter_map(|(at, _)| {
            let rest = &text[at + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            Some(&rest[..end]).filter(|name| !name.is_empty())
        })
        .collect()
}

#[test]
fn every_module_imports_only_modules_below_it_in_the_map() {
    let floors = floors();
    let mut files = Vec::new();
    sources(Path::new(SRC), &mut files);
    let mut upward = Vec::new();
    for (path, text) in &files {
        let module = path.split(['/', '.']).next().expect("a name");
        let Some(&floor) = floors.get(module) else {
            assert!(
                ["main", "lib"].contains(&module),
                "{path}: module {module} is missing from lib.rs's map"
            );
            continue;
        };
        for used in crate_references(text) {
            let used_floor = *floors
                .get(used)
                .unwrap_or_else(|| panic!("{path} names crate::{used}, which is no module"));
            if used != module && used_floor >= floor {
                upward.push(format!("{path} -> crate::{used}"));
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(
        upward.is_empty(),
        "imports that run up the map (or sideways): {upward:#?}"
    );
}

#[test]
fn no_source_file_outgrows_six_hundred_lines() {
    let mut files = Vec::new();
    sources(Path::new(SRC), &mut files);
    let too_big: Vec<String> = files
        .iter()
        .filter(|(path, _)| !path.ends_with("tests.rs"))
        .map(|(path, text)| (path, text.lines().count()))
        .filter(|(_, lines)| *lines > MAX_LINES)
        .map(|(path, lines)| format!("{path}: {lines} lines"))
        .collect();
    assert!(too_big.is_empty(), "split these: {too_big:#?}");
}
