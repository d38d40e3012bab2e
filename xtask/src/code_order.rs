//! The order of the controller's code: `build/code-order.txt` lists the functions a profiled
//! run of `fledge` ran (`cargo xtask bench scale --code-profile` writes it from valgrind's
//! callgrind), and `build/link-musl`, the linker of the static musl executables, places them
//! first and together. The kernel maps a program's code in blocks around each page it touches
//! (64 KiB by default), so code that runs but is spread over the whole executable keeps nearly
//! all of it resident; kept together, only its own part.
//!
//! No I/O here but [`listed`] and [`symbols`]; the rest has unit tests.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The list, relative to the project's root.
pub const LIST: &str = "build/code-order.txt";

/// The path of [`LIST`].
pub fn list_path() -> PathBuf {
    crate::util::root().join(LIST)
}

/// The names in the list (one a line).
pub fn listed() -> Result<HashSet<String>> {
    let path = list_path();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// The functions callgrind saw run, from its output written with `--compress-strings=no`
/// (every `fn=` line names one in full): symbol names only, not the addresses it gives code
/// without a symbol nor its `(below main)`.
pub fn functions_run(callgrind: &str) -> BTreeSet<String> {
    callgrind
        .lines()
        .filter_map(|l| l.strip_prefix("fn="))
        .map(str::trim)
        .filter(|n| {
            !n.is_empty() && !n.starts_with("0x") && !n.starts_with('(') && !n.contains(' ')
        })
        .map(String::from)
        .collect()
}

/// The list's text: one name a line, sorted, so that a new profile changes only the lines of
/// what changed.
pub fn list_text(names: &BTreeSet<String>) -> String {
    names.iter().map(|n| format!("{n}\n")).collect()
}

/// A Rust symbol's name without its hash (the legacy mangling's `17h<16 hex digits>E`), which
/// changes with the compiler and the crate's dependencies; other names as they are.
pub fn stem(name: &str) -> &str {
    let Some(head) = name.strip_suffix('E') else {
        return name;
    };
    match head.len().checked_sub(19) {
        Some(at)
            if head.is_char_boundary(at)
                && head[at..].starts_with("17h")
                && head[at + 3..]
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            &name[..at]
        }
        _ => name,
    }
}

/// Which of `symbols` the link places first (`build/link-musl`'s rule): the listed ones, and
/// every instance of a listed Rust function none of whose listed instances is found (its hash
/// changed).
pub fn placed_first(symbols: &[Symbol], listed: &HashSet<String>) -> Vec<bool> {
    let stems: HashSet<&str> = listed.iter().map(|n| stem(n)).collect();
    let found: HashSet<&str> = symbols
        .iter()
        .filter(|s| listed.contains(&s.name))
        .map(|s| stem(&s.name))
        .collect();
    symbols
        .iter()
        .map(|s| {
            let k = stem(&s.name);
            listed.contains(&s.name) || (!found.contains(k) && stems.contains(k))
        })
        .collect()
}

/// A function of an executable: its address, size and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub addr: u64,
    pub size: u64,
    pub name: String,
}

/// How the functions placed first lie in an executable's code.
#[derive(Debug, PartialEq, Eq)]
pub struct Layout {
    /// Functions placed first, and their bytes.
    pub placed: usize,
    pub placed_bytes: u64,
    /// From the first of them to the end of the last.
    pub span: u64,
    /// All the functions' bytes.
    pub text_bytes: u64,
    /// Blocks of 64 KiB that hold any of them.
    pub blocks: usize,
}

/// The block the kernel maps around a touched page of code, by default (`fault_around_bytes`).
pub const BLOCK: u64 = 64 * 1024;

/// Where the functions placed first for `listed` lie among `symbols`.
pub fn layout(symbols: &[Symbol], listed: &HashSet<String>) -> Layout {
    let first = placed_first(symbols, listed);
    let placed: Vec<&Symbol> = symbols
        .iter()
        .zip(&first)
        .filter_map(|(s, f)| f.then_some(s))
        .collect();
    let start = placed.iter().map(|s| s.addr).min().unwrap_or(0);
    let end = placed.iter().map(|s| s.addr + s.size).max().unwrap_or(0);
    let blocks: BTreeSet<u64> = placed
        .iter()
        .flat_map(|s| (s.addr / BLOCK)..=((s.addr + s.size.max(1) - 1) / BLOCK))
        .collect();
    Layout {
        placed: placed.len(),
        placed_bytes: placed.iter().map(|s| s.size).sum(),
        span: end.saturating_sub(start),
        text_bytes: symbols.iter().map(|s| s.size).sum(),
        blocks: blocks.len(),
    }
}

impl Layout {
    /// Whether the functions placed first are together: they span little more than their own
    /// bytes (a few others share their sections, such as an assembly file's functions).
    pub fn together(&self) -> bool {
        self.placed > 0 && self.span <= self.placed_bytes + self.placed_bytes / 8 + BLOCK
    }
}

/// The functions (`nm`'s text symbols with a size) of the executable at `path`.
pub fn symbols(path: &Path) -> Result<Vec<Symbol>> {
    let out = crate::util::stdout_of(
        &format!("nm {} (binutils)", path.display()),
        Command::new("nm")
            .args(["--defined-only", "-P", "-S"])
            .arg(path),
    )?;
    Ok(parse_nm(&out))
}

/// `nm -P -S` output: `name type address size`, functions (types t, T, w, W) only.
pub fn parse_nm(text: &str) -> Vec<Symbol> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?;
            let kind = f.next()?;
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let size = u64::from_str_radix(f.next()?, 16).ok()?;
            matches!(kind, "t" | "T" | "w" | "W").then(|| Symbol {
                addr,
                size,
                name: name.into(),
            })
        })
        .collect()
}

/// Checks that `bin` was linked in the list's order, and says how: the listed functions must
/// lie together, or the link did not go through `build/link-musl`.
pub fn check(bin: &Path) -> Result<String> {
    let listed = listed()?;
    let symbols = symbols(bin)?;
    let l = layout(&symbols, &listed);
    let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
    let said = format!(
        "{} of {} functions listed in {LIST} ({}) lie within {} of its {} of code, in {} blocks \
         of 64 KiB",
        l.placed,
        listed.len(),
        mb(l.placed_bytes),
        mb(l.span),
        mb(l.text_bytes),
        l.blocks
    );
    if !l.together() {
        bail!(
            "{}: {said}: they are spread out, so the link did not place them first; it must go \
             through build/link-musl (.cargo/config.toml, [target.x86_64-unknown-linux-musl] \
             linker)",
            bin.display()
        );
    }
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(addr: u64, size: u64, name: &str) -> Symbol {
        Symbol {
            addr,
            size,
            name: name.into(),
        }
    }

    fn set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn callgrind_s_functions_are_its_symbol_names() {
        let out = "version: 1\ncmd: fledge run\nfn=_ZN4core3fmt5write17h0123456789abcdefE\n\
                   1 20\ncfn=memcpy\ncalls=2 0\n1 4\nfn=memcpy\n1 8\nfn=0x0000000000401000\n\
                   1 1\nfn=(below main)\n1 1\nfn=_ZN4core3fmt5write17h0123456789abcdefE\n1 2\n";
        let run = functions_run(out);
        assert_eq!(
            run.into_iter().collect::<Vec<_>>(),
            vec!["_ZN4core3fmt5write17h0123456789abcdefE", "memcpy"]
        );
    }

    #[test]
    fn the_list_is_sorted_one_name_a_line() {
        let names: BTreeSet<String> = ["b", "a"].into_iter().map(String::from).collect();
        assert_eq!(list_text(&names), "a\nb\n");
    }

    #[test]
    fn a_stem_drops_only_a_legacy_hash() {
        assert_eq!(
            stem("_ZN4core3fmt5write17h0123456789abcdefE"),
            "_ZN4core3fmt5write"
        );
        for other in [
            "memcpy",
            "_ZN4core3fmt5writeE",
            "_ZN4core3fmt5write17h0123456789abcdegE",
            "_ZN4core3fmt5write17h0123456789ABCDEFE",
            "_ZN4core3fmt5write17h0123456789abcdeE",
            "_RNvCs1234_4core5write",
        ] {
            assert_eq!(stem(other), other);
        }
    }

    /// One example of the placement rule for both its sides, [`placed_first`] here and the
    /// awk of `build/link-musl`: the list (`memcpy` stands for a C library's function, which is
    /// in no object rustc links) ...
    const LISTED: [&str; 4] = [
        "_ZN1a3run17h0000000000000001E",
        "_ZN1b4stop17h0000000000000099E",
        "c_listed",
        "memcpy",
    ];
    /// ... and an object's functions, with whether each is placed first.
    const FUNCTIONS: [(&str, bool); 6] = [
        // Listed exactly: placed; its sibling instance of the same function is not.
        ("_ZN1a3run17h0000000000000001E", true),
        ("_ZN1a3run17h0000000000000002E", false),
        // Listed with a hash this build no longer has: every instance placed.
        ("_ZN1b4stop17h00000000000000aaE", true),
        ("_ZN1b4stop17h00000000000000bbE", true),
        // C, listed: placed; not listed: left.
        ("c_listed", true),
        ("unlisted", false),
    ];

    #[test]
    fn listed_functions_are_placed_first_and_a_changed_hash_falls_back_to_every_instance() {
        let symbols: Vec<Symbol> = (0..)
            .zip(FUNCTIONS)
            .map(|(i, (name, _))| sym(i * 10, 10, name))
            .collect();
        assert_eq!(
            placed_first(&symbols, &set(&LISTED)),
            vec![true, false, true, true, true, false]
        );
    }

    #[test]
    fn a_layout_says_whether_the_listed_functions_are_together() {
        let listed = set(&["a", "b", "c"]);
        // Ordered: a, b, c at the start, the rest after.
        let ordered = vec![
            sym(0x1000, 0x8000, "a"),
            sym(0x9000, 0x8000, "b"),
            sym(0x11000, 0x8000, "c"),
            sym(0x19000, 0x100000, "cold"),
        ];
        let l = layout(&ordered, &listed);
        assert_eq!(l.placed, 3);
        assert_eq!(l.placed_bytes, 0x18000);
        assert_eq!(l.span, 0x18000);
        assert_eq!(l.text_bytes, 0x118000);
        assert_eq!(l.blocks, 2);
        assert!(l.together());
        // The same functions spread over the code, as a link without the list leaves them.
        let spread = vec![
            sym(0x1000, 0x8000, "a"),
            sym(0x9000, 0x80000, "cold"),
            sym(0x89000, 0x8000, "b"),
            sym(0x91000, 0x80000, "colder"),
            sym(0x111000, 0x8000, "c"),
        ];
        let l = layout(&spread, &listed);
        assert_eq!(l.blocks, 4);
        assert!(!l.together());
        // Nothing listed is found: not together either.
        assert!(!layout(&spread, &set(&["x"])).together());
    }

    /// Runs a copy of `build/link-musl` with `list` beside it on an object holding `functions`,
    /// a stand-in `cc` first on the PATH recording what it is given: its arguments and the
    /// ordering file.
    fn link_musl(name: &str, list: Option<&str>, functions: &[&str]) -> (bool, String, String) {
        let dir = std::env::temp_dir().join(format!("fledge-link-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("build")).unwrap();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::copy(
            crate::util::root().join("build/link-musl"),
            dir.join("build/link-musl"),
        )
        .unwrap();
        if let Some(list) = list {
            std::fs::write(dir.join("build/code-order.txt"), list).unwrap();
        }
        let c: String = functions
            .iter()
            .map(|f| format!("void {f}(void) {{}}\n"))
            .collect();
        std::fs::write(dir.join("obj.c"), c).unwrap();
        let compiled = Command::new("gcc")
            .args(["-c", "-o"])
            .arg(dir.join("obj.o"))
            .arg(dir.join("obj.c"))
            .status()
            .unwrap();
        assert!(compiled.success());
        let cc = dir.join("bin/cc");
        std::fs::write(
            &cc,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in -Wl,--symbol-ordering-file=*) \
                 cp \"${{a#*=}}\" {order}; esac; done\necho \"$@\" > {args}\n",
                order = dir.join("order").display(),
                args = dir.join("args").display()
            ),
        )
        .unwrap();
        let mut perms = std::fs::metadata(&cc).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&cc, perms).unwrap();
        let path = format!(
            "{}:{}",
            dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new(dir.join("build/link-musl"))
            .arg(dir.join("obj.o"))
            .args(["-o", "out"])
            .env("PATH", path)
            .output()
            .unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let said = format!("{}{}", read("args"), String::from_utf8_lossy(&out.stderr));
        let order = read("order");
        let _ = std::fs::remove_dir_all(&dir);
        (out.status.success(), order, said)
    }

    #[test]
    fn link_musl_links_through_lld_with_the_listed_functions_first() {
        let list: String = LISTED.iter().map(|n| format!("{n}\n")).collect();
        let (ok, order, args) = link_musl("order", Some(&list), &FUNCTIONS.map(|(n, _)| n));
        assert!(ok, "{args}");
        // The listed names in the list's order (memcpy, of the C library, too), then every
        // instance of the function whose listed hash this object does not have; not the
        // sibling of an instance found, nor what is not listed.
        assert_eq!(
            order.lines().collect::<Vec<_>>(),
            vec![
                "_ZN1a3run17h0000000000000001E",
                "_ZN1b4stop17h0000000000000099E",
                "c_listed",
                "memcpy",
                "_ZN1b4stop17h00000000000000aaE",
                "_ZN1b4stop17h00000000000000bbE",
            ]
        );
        // The same functions as `placed_first` places: the awk and the check agree.
        let placed: Vec<&str> = FUNCTIONS
            .iter()
            .filter(|(_, placed)| *placed)
            .map(|(n, _)| *n)
            .collect();
        assert!(placed.iter().all(|n| order.lines().any(|l| l == *n)));
        assert!(
            FUNCTIONS
                .iter()
                .filter(|(_, placed)| !placed)
                .all(|(n, _)| order.lines().all(|l| l != *n))
        );
        assert!(args.contains("-fuse-ld=lld"), "{args}");
        assert!(args.contains("gcc-ld"), "{args}");
        assert!(args.contains("obj.o -o out"), "{args}");
    }

    #[test]
    fn link_musl_refuses_to_link_without_its_list() {
        let (ok, order, said) = link_musl("nolist", None, &["f"]);
        assert!(!ok);
        assert!(order.is_empty());
        assert!(said.contains("code-order.txt is missing"), "{said}");
        assert!(said.contains("--code-profile"), "{said}");
    }

    #[test]
    fn nm_s_functions_are_its_text_symbols_with_a_size() {
        let out = "main T 401000 2a\nDATA D 500000 10\nlocal t 401030 8\nnosize T 401040\n\
                   weak W 401050 4\n";
        assert_eq!(
            parse_nm(out),
            vec![
                sym(0x401000, 0x2a, "main"),
                sym(0x401030, 8, "local"),
                sym(0x401050, 4, "weak"),
            ]
        );
    }
}
